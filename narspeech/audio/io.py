"""Audio loading: any format libsndfile reads (wav, flac, ogg, ...), mono check, resampling with torchaudio."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float = -1.0,
    allow_stereo: bool = False,
) -> torch.Tensor:
    """Read ``path`` (optionally the segment ``start``..``end`` seconds) as a float32 tensor of shape ``(T,)``.

    Resamples to ``sample_rate`` (None keeps the file's rate) with ``torchaudio.functional.resample``.
    Multi-channel audio is an error unless ``allow_stereo`` (then channels are averaged): an ASR model silently
    fed a stereo file's first channel is a bug that is hard to find later.
    """
    try:
        info = sf.info(str(path))
        start_frame = int(round(start * info.samplerate))
        stop_frame = None if end < 0 else int(round(end * info.samplerate))
        data, sr = sf.read(str(path), start=start_frame, stop=stop_frame, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as e:
        raise AudioError(f"{path}: cannot read audio: {e}") from None
    if data.shape[1] > 1:
        if not allow_stereo:
            raise AudioError(f"{path}: {data.shape[1]} channels; expected mono audio")
        data = data.mean(axis=1, keepdims=True)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples" + (f" in segment {start}..{end}s" if start or end >= 0 else ""))
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN/Inf samples")
    wav = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if sample_rate is not None and sr != sample_rate:
        wav = AF.resample(wav, orig_freq=sr, new_freq=sample_rate)
    return wav


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (no decoding)."""
    try:
        return sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio header: {e}") from None
