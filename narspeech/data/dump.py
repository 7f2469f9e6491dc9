"""Extracted features on disk: ``dump/<set>/<kind>/<utt>.npy`` indexed by ``dump/<set>/<kind>.scp`` (``<utt> <path>``),
as ESPnet's ``dump/`` but one ``.npy`` per utterance (memory-mapped on read, no Kaldi ark).

Extraction is resumable and safe to kill: every ``.npy`` is written to a temp file and renamed, a file already there
is kept, and the scp is written (atomically) at the end. Audio that cannot be used is named and skipped; the
extractors are a small registry (``fbank`` here; the TTS family adds its mel, pitch and energy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from narspeech.audio.io import AudioError, load_audio
from narspeech.data.kaldi import DataDirError, Utterance, read_kv, write_kv


@dataclass(frozen=True)
class Extractor:
    """A per-utterance feature: ``fn(waveform (T,), sample_rate) -> array`` computed at ``sample_rate``."""

    fn: Callable[[torch.Tensor, int], np.ndarray]
    sample_rate: int


EXTRACTORS: dict[str, Extractor] = {}


def register_extractor(name: str, fn: Callable[[torch.Tensor, int], np.ndarray], sample_rate: int) -> None:
    if name in EXTRACTORS and EXTRACTORS[name].fn is not fn:
        raise ValueError(f"feature extractor {name!r} is already registered")
    EXTRACTORS[name] = Extractor(fn, sample_rate)


def _fbank(wav: torch.Tensor, sample_rate: int) -> np.ndarray:
    from narspeech.audio.features import fbank

    return fbank(wav, sample_rate).numpy()


register_extractor("fbank", _fbank, 16000)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _readable_npy(path: Path) -> bool:
    try:
        np.load(path, mmap_mode="r")
        return True
    except (OSError, ValueError):
        return False


def dump_features(utts: Sequence[Utterance], out_dir: str | os.PathLike, kind: str,
                  progress: Callable = lambda it, **kw: it) -> tuple[int, list[tuple[str, str]]]:
    """Extract ``kind`` for every utterance into ``<out_dir>/<kind>/`` and write ``<out_dir>/<kind>.scp``.

    Returns (number of features written or reused, [(utterance id, why) for those skipped])."""
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown feature {kind!r}; valid: {', '.join(sorted(EXTRACTORS))}")
    ex = EXTRACTORS[kind]
    out = Path(out_dir)
    (out / kind).mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    for u in progress(utts, desc=f"dump {kind}", unit="utt"):
        path = (out / kind / f"{u.utt_id}.npy").resolve()
        if not (path.is_file() and _readable_npy(path)):  # resumable: what a killed run wrote whole is kept
            seg = u.segment
            try:
                wav = load_audio(u.audio, ex.sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0)
                save_npy_atomic(path, np.ascontiguousarray(ex.fn(wav, ex.sample_rate), dtype=np.float32))
            except AudioError as e:
                skipped.append((u.utt_id, str(e) if str(e).startswith(str(u.audio)) else f"{u.audio}: {e}"))
                continue
        index[u.utt_id] = str(path)
    write_kv(out / f"{kind}.scp", index)
    return len(index), skipped


def read_feats_scp(path: str | os.PathLike) -> dict[str, str]:
    """``{utt: .npy path}`` of a feature scp; :class:`DataDirError` naming the line when a file is missing."""
    index = read_kv(path)
    for k, v in index.items():
        if not Path(v).is_file():
            raise DataDirError(f"{path}: utterance {k!r}: no such file {v}")
    return index


def load_feature(path: str | os.PathLike) -> np.ndarray:
    """One utterance's feature array (memory-mapped: only what is used is read)."""
    return np.load(path, mmap_mode="r")
