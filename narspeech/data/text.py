"""Text-to-text data dirs, Kaldi style: ``text`` (the target of each key) and a source file with the same keys:
``text.src`` (translation: the source sentence) or ``text.hyp`` (correction: an ASR hypothesis; ``text.hyp.N`` for
the N-th of an N-best list). Lines are ``<key> <text>``; a source or target may be empty (an empty hypothesis)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from narspeech.data.kaldi import DataDirError, read_kv


@dataclass(frozen=True)
class TextPair:
    """One source/target pair of a text-to-text data dir."""

    key: str
    source: str
    target: str


def read_text_dir(path: str | os.PathLike, source: str = "text.src") -> list[TextPair]:
    """The pairs of ``<path>/<source>`` and ``<path>/text``, sorted by key; :class:`DataDirError` naming the file
    and key when a file is missing, a key is in one file only, or a line is malformed."""
    path = Path(path)
    for name in (source, "text"):
        if not (path / name).is_file():
            raise DataDirError(f"{path}: no {name} (a text-to-text data dir has 'text' and '{source}')")
    src = read_kv(path / source, allow_empty_value=True)
    tgt = read_kv(path / "text", allow_empty_value=True)
    only_src, only_tgt = sorted(set(src) - set(tgt)), sorted(set(tgt) - set(src))
    if only_src:
        raise DataDirError(f"{path / source}: key {only_src[0]!r} has no target in {path / 'text'} "
                           f"({len(only_src)} such)")
    if only_tgt:
        raise DataDirError(f"{path / 'text'}: key {only_tgt[0]!r} has no source in {path / source} "
                           f"({len(only_tgt)} such)")
    return [TextPair(k, src[k], tgt[k]) for k in sorted(tgt)]


def is_text_dir(path: str | os.PathLike) -> bool:
    """A data dir without audio whose ``text`` comes with a source file (``text.src`` or ``text.hyp*``)."""
    path = Path(path)
    return (not (path / "wav.scp").exists() and (path / "text").is_file()
            and any(p.name == "text.src" or p.name.startswith("text.hyp") for p in path.iterdir()))


def validate_text_dir(path: str | os.PathLike) -> list[str]:
    """Problems of a text-to-text data dir (empty when valid): every source file (``text.src``, ``text.hyp``,
    ``text.hyp.N``) must have exactly the keys of ``text``, sorted and unique."""
    path = Path(path)
    problems: list[str] = []
    sources = sorted(p.name for p in path.iterdir() if p.name == "text.src" or p.name.startswith("text.hyp"))
    for name in ["text", *sources]:
        keys = [ln.split(maxsplit=1)[0] for ln in (path / name).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if keys != sorted(keys):
            bad = next(b for a, b in zip(keys, keys[1:]) if b < a)
            problems.append(f"{path / name}: not sorted (key {bad!r} is out of order); sort with LC_ALL=C sort")
    for name in sources:
        try:
            read_text_dir(path, name)
        except (DataDirError, UnicodeDecodeError) as e:
            problems.append(str(e))
    return problems
