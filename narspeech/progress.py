"""Progress bars (tqdm) on stderr for long steps, shown only where someone watches.

A bar is drawn when stderr is a terminal and the user did not ask for quiet (``--quiet`` on a verb, or
``NARSPEECH_QUIET=1``); in logs and CI (stderr redirected) tqdm would write one carriage-return line per update, so
there the long steps log plain lines at their own pace instead.
"""

from __future__ import annotations

import os
import shutil
import sys
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

QUIET_ENV = "NARSPEECH_QUIET"


def set_quiet(quiet: bool = True) -> None:
    """Silence (or allow) every progress bar of this process and of the processes it starts (DataLoader workers,
    recipe subprocesses)."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def bars_enabled() -> bool:
    """True when progress bars are drawn: stderr is a terminal and quiet was not asked for."""
    if os.environ.get(QUIET_ENV, "") not in ("", "0"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
             unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (rate and ETA when ``total`` is known) that draws nothing where :func:`bars_enabled`
    is false or ``enabled`` is (e.g. on all but the first DDP rank); the bar is cleared when done, so the lines
    logged around it stay readable."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    kwargs.setdefault("leave", False)
    # the terminal's size, 80 x 24 where it reports none: on a pseudo-terminal of size 0 (ssh -T, script, some CI
    # runners) tqdm would hide every bar as beyond the screen's last row
    size = shutil.get_terminal_size()
    kwargs.setdefault("ncols", size.columns)
    kwargs.setdefault("nrows", size.lines)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (enabled and bars_enabled()), file=sys.stderr,
                **kwargs)


def write(message: str) -> None:
    """Print a line on stderr above any progress bar (a plain print would be glued to the bar's line)."""
    tqdm.write(message, file=sys.stderr)


@contextlib.contextmanager
def logs_above_bars() -> Iterator[None]:
    """While bars are drawn, route the console handlers of the root logger through :func:`write` (the log file
    handlers are untouched), so log lines do not land in the middle of a bar."""
    if not bars_enabled():
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
