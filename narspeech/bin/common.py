"""Command-line pieces shared by the verbs: decoding options, ``--quiet``, result files written atomically."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path
from typing import TextIO

METHODS = ("greedy", "beam", "refine")


def add_decode_args(p: argparse.ArgumentParser) -> None:
    """The ``ASRDecodeOptions`` fields as options (defaults from the dataclass, so they cannot drift)."""
    from narspeech.asr.base import ASRDecodeOptions

    d = ASRDecodeOptions()
    g = p.add_argument_group("decoding")
    g.add_argument("--method", choices=METHODS, default=d.method,
                   help="greedy: CTC best path (AR: attention greedy); beam: CTC prefix / AR beam search; "
                        "refine: Mask-CTC mask-predict or Imputer block decoding")
    g.add_argument("--beam-size", type=int, default=d.beam_size)
    g.add_argument("--iterations", type=int, default=d.iterations, help="refine: Mask-CTC K / Imputer B passes")
    g.add_argument("--threshold", type=float, default=d.threshold, help="Mask-CTC: mask CTC tokens below this probability")
    g.add_argument("--length-threshold", type=float, default=d.length_threshold,
                   help="Improved Mask-CTC: change a masked span's length only at this length-head probability or more")
    g.add_argument("--length-steps", type=int, default=d.length_steps,
                   help="Improved Mask-CTC: predict lengths in the first N iterations only (0: in all, as in the paper)")
    g.add_argument("--deletion-threshold", type=float, default=d.deletion_threshold,
                   help="Mask-CTC with mlm_deletion: delete a mask at this 'no token' probability or more "
                        "(0: where it is the most probable; above 1: never)")
    g.add_argument("--ctc-weight", type=float, default=d.ctc_weight, help="AR beam: weight of the CTC prefix score")
    g.add_argument("--length-bonus", type=float, default=d.length_bonus, help="AR beam: score per emitted token")


def decode_options(args: argparse.Namespace):
    from narspeech.asr.base import ASRDecodeOptions

    return ASRDecodeOptions(method=args.method, beam_size=args.beam_size, iterations=args.iterations,
                            threshold=args.threshold, length_threshold=args.length_threshold, length_steps=args.length_steps,
                            deletion_threshold=args.deletion_threshold, ctc_weight=args.ctc_weight,
                            length_bonus=args.length_bonus)


def unsupported_method(model, opts, prog: str) -> str | None:
    """An error line when ``model`` cannot decode with ``opts.method`` (checked before any file is touched)."""
    methods = getattr(model, "methods", ())
    if opts.method not in methods:
        return f"{prog}: {type(model).__name__} cannot decode with --method {opts.method}; valid: {', '.join(methods)}"
    return None


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars (they are drawn only on a terminal anyway)")


def apply_quiet(args: argparse.Namespace) -> None:
    if getattr(args, "quiet", False):
        from narspeech.progress import set_quiet

        set_quiet(True)


def os_reason(e: OSError) -> str:
    """An OSError in words without Python's decoration: 'read-only file system', 'not a directory: /a/b', ..."""
    why = e.strerror or type(e).__name__
    why = why[:1].lower() + why[1:]
    return f"{why}: {e.filename}" if e.filename else why


def unwritable_dir(path: str | os.PathLike) -> str | None:
    """Why the folder ``path`` could not be created or written to (None when it can), without creating it."""
    p = Path(path).absolute()
    if p.exists():
        if not p.is_dir():
            return f"not a directory: {p} is a file"
        return None if os.access(p, os.W_OK | os.X_OK) else f"{p}: permission denied (or a read-only file system)"
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"not a directory: {parent} is a file"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"{parent}: permission denied (or a read-only file system)"


class OutputFile:
    """A result file that appears whole or not at all.

    :meth:`open` (call it before any long work) creates a temp file beside the destination, creating missing folders,
    so an unwritable destination fails at once with :class:`OSError`; :meth:`commit` renames it over the
    destination; :meth:`keep_partial` (after a crash or interrupt) renames what was written to ``<path>.partial`` and
    leaves the destination as it was.
    """

    def __init__(self, path: str | os.PathLike, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.file: TextIO | None = None

    def open(self) -> TextIO:
        if self.path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(self.path))
        why = unwritable_dir(self.path.parent)
        if why:  # a clearer reason than mkdir's "file exists" for a path under a file
            raise NotADirectoryError(errno.ENOTDIR, why)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.tmp, "w", encoding=self.encoding)
        return self.file

    def commit(self) -> None:
        assert self.file is not None, "open() first"
        self.file.close()
        os.replace(self.tmp, self.path)

    def keep_partial(self) -> Path | None:
        """Move what was written to ``<path>.partial`` (None when nothing could be kept)."""
        if self.file is None:
            return None
        self.file.close()
        partial = self.path.with_name(self.path.name + ".partial")
        try:
            os.replace(self.tmp, partial)
        except OSError:
            self.tmp.unlink(missing_ok=True)
            return None
        return partial

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
        self.tmp.unlink(missing_ok=True)
