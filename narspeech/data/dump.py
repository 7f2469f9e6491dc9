"""Extracted features on disk: ``dump/<set>/<kind>/<utt>.npy`` indexed by an scp (``<utt> <path>``) named as
ESPnet's ``dump/``: ``feats.scp`` for the model's input/target features (``fbank``; TTS's mel), ``pitch.scp``,
``energy.scp`` for the others; one ``.npy`` per utterance (memory-mapped on read, no Kaldi ark).

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
    scp: str  # the index's name in dump/<set>/ without ".scp" ("feats", "pitch", ...)


EXTRACTORS: dict[str, Extractor] = {}


def register_extractor(name: str, fn: Callable[[torch.Tensor, int], np.ndarray], sample_rate: int,
                       scp: str | None = None) -> None:
    """Register feature ``name``, indexed by ``<scp or name>.scp``."""
    if name in EXTRACTORS and EXTRACTORS[name].fn is not fn:
        raise ValueError(f"feature extractor {name!r} is already registered")
    EXTRACTORS[name] = Extractor(fn, sample_rate, scp or name)


def scp_path(out_dir: str | os.PathLike, kind: str) -> Path:
    """Where ``dump_features(..., out_dir, kind)`` writes its index."""
    return Path(out_dir) / f"{EXTRACTORS[kind].scp}.scp"


def _fbank(wav: torch.Tensor, sample_rate: int) -> np.ndarray:
    from narspeech.audio.features import fbank

    return fbank(wav, sample_rate).numpy()


register_extractor("fbank", _fbank, 16000, scp="feats")


def _tts_feature(name: str) -> Callable[[torch.Tensor, int], np.ndarray]:
    def fn(wav: torch.Tensor, sample_rate: int) -> np.ndarray:
        from narspeech.audio import mel

        return getattr(mel, name)(wav, mel.MelConfig(sample_rate=sample_rate)).numpy()

    return fn


# TTS targets on one frame grid (narspeech.audio.mel): hifi-gan's log-mel, F0 in Hz (0 = unvoiced), frame energy
TTS_SAMPLE_RATE = 22050
register_extractor("mel", _tts_feature("log_mel"), TTS_SAMPLE_RATE, scp="feats")
register_extractor("pitch", _tts_feature("pitch"), TTS_SAMPLE_RATE)
register_extractor("energy", _tts_feature("energy"), TTS_SAMPLE_RATE)


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
    """Extract ``kind`` for every utterance into ``<out_dir>/<kind>/`` and write its scp (:func:`scp_path`).

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
    write_kv(scp_path(out, kind), index)
    return len(index), skipped


def read_feats_scp(path: str | os.PathLike) -> dict[str, str]:
    """``{utt: .npy path}`` of a feature scp; :class:`DataDirError` naming the line when a file is missing."""
    index = read_kv(path)
    for k, v in index.items():
        if not Path(v).is_file():
            raise DataDirError(f"{path}: utterance {k!r}: no such file {v}")
    return index


def is_dump_dir(path: str | os.PathLike) -> bool:
    """A folder of feature indexes (``*.scp`` but no ``wav.scp``): what ``narspeech dump`` writes."""
    p = Path(path)
    return p.is_dir() and not (p / "wav.scp").exists() and any(p.glob("*.scp"))


def validate_dump_dir(path: str | os.PathLike) -> list[str]:
    """Problems of a dump dir (empty when valid): each scp's lines are ``<utt> <path>``, keys unique and sorted,
    every path a readable ``.npy``; the scps of one dir index the same utterances."""
    problems: list[str] = []
    keys: dict[str, set[str]] = {}
    for scp in sorted(Path(path).glob("*.scp")):
        try:
            index = read_kv(scp)
        except DataDirError as e:
            problems.append(str(e))
            continue
        if list(index) != sorted(index):
            problems.append(f"{scp}: keys are not sorted (LC_ALL=C sort)")
        for k, v in index.items():
            if not Path(v).is_file():
                problems.append(f"{scp}: utterance {k!r}: no such file {v}")
            elif not _readable_npy(Path(v)):
                problems.append(f"{scp}: utterance {k!r}: {v} is not a readable .npy array")
        keys[scp.name] = set(index)
    names = sorted(keys)
    for other in names[1:]:
        diff = keys[names[0]] ^ keys[other]
        if diff:
            problems.append(f"{Path(path) / other}: {len(diff)} utterance(s) not in both {names[0]} and {other}, "
                            f"e.g. {sorted(diff)[0]!r}")
    return problems


def load_feature(path: str | os.PathLike) -> np.ndarray:
    """One utterance's feature array (memory-mapped: only what is used is read)."""
    return np.load(path, mmap_mode="r")
