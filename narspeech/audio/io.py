"""Audio loading: any format libsndfile reads (wav, flac, ogg, ...), mono check, resampling with torchaudio."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

# soundfile reads int16 as value / 32768; writing with the same scale keeps levels exact
PCM16_SCALE = 32768.0


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
        wav = resample(wav, sr, sample_rate)
    return wav


@functools.lru_cache(maxsize=32)
def resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    """torchaudio's band-limited sinc resampler with its kernel built once per rate pair
    (``torchaudio.functional.resample`` rebuilds it on every call: 2-8x slower on short utterances)."""
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def resample(wav: torch.Tensor | np.ndarray, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample a 1-D signal (tensor or float32 array) -> float32 tensor."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)) if isinstance(wav, np.ndarray) else wav
    if orig_freq == new_freq:
        return x
    with torch.inference_mode():
        return resampler(orig_freq, new_freq)(x).clone()


def save_wav(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int, comment: str | None = None) -> int:
    """Write a mono float signal as 16-bit PCM wav atomically (temp file + rename: a killed job leaves no half file).

    Samples beyond full scale are clipped rather than wrapped. ``comment`` is stored in the wav's INFO chunk.
    Returns the number of samples written.
    """
    x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    pcm = np.clip(np.round(x * PCM16_SCALE), -32768, 32767).astype(np.int16)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with sf.SoundFile(str(tmp), "w", sample_rate, 1, "PCM_16", format="WAV") as f:
            if comment is not None:
                f.comment = comment
            f.write(pcm)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed
    return len(pcm)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file header (no decoding)."""
    try:
        return sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio header: {e}") from None
