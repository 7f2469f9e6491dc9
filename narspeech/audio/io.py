"""Audio loading: any format libsndfile reads (wav, flac, ogg, ...), mono check, resampling with torchaudio (soxr
for unusual rate pairs).

Every failure is an :class:`AudioError` whose message names the file and says what is wrong with it in words a user
can act on ("no such file", "is a directory", "too short", "sample rate ... outside ..."), never a library's code.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

# soundfile reads int16 as value / 32768; writing with the same scale keeps levels exact
PCM16_SCALE = 32768.0
# Sample rates a file may declare. Below 1 kHz a file is not speech audio; above 768 kHz (twice DXD) the header is
# almost certainly corrupt, and resampling from it would allocate filters of gigabytes.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
# torchaudio's resampler builds a (new, orig + 2 * width) kernel from the reduced rate pair: for coprime rates such
# as 44101 -> 16000 that is gigabytes. Pairs whose kernel would exceed this many taps go through soxr instead.
MAX_SINC_KERNEL_TAPS = 2_000_000


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the problem."""


def _open_problem(path: str | os.PathLike, e: Exception) -> str:
    """Why ``path`` could not be opened, in words (libsndfile says 'System error' for a missing file)."""
    p = Path(path)
    if not p.exists():
        return "no such file"
    if p.is_dir():
        return "is a directory, not an audio file"
    if not os.access(p, os.R_OK):
        return "permission denied"
    try:
        if p.stat().st_size == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    msg = str(e).replace(f"Error opening {str(path)!r}: ", "")
    return f"cannot read audio ({msg.rstrip('.')}; not an audio file, or a format libsndfile does not read)"


def audio_info(path: str | os.PathLike):
    """The file's header (``soundfile.info``) with its sample rate checked; :class:`AudioError` otherwise."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError, RuntimeError, TypeError, OSError for bad files
        raise AudioError(f"{path}: {_open_problem(path, e)}") from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {info.samplerate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz "
                         "(corrupt header?)")
    return info


def read_audio(
    path: str | os.PathLike,
    start: float = 0.0,
    end: float = -1.0,
    allow_stereo: bool = False,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)``: the file (or its ``start``..``end`` seconds) as float32 ``(T,)`` at its own rate.

    Checked before decoding: the header, the sample rate, the duration (at most ``max_seconds`` when given: a long
    file is refused by name instead of exhausting memory in the encoder); after: channels, emptiness, NaN/Inf.
    Multi-channel audio is an error unless ``allow_stereo`` (then channels are averaged): an ASR model silently
    fed a stereo file's first channel is a bug that is hard to find later.
    """
    info = audio_info(path)
    sr = info.samplerate
    start_frame = int(round(start * sr))
    stop_frame = None if end < 0 else int(round(end * sr))
    if max_seconds is not None:
        n = (info.frames if stop_frame is None else min(stop_frame, info.frames)) - start_frame
        if n > max_seconds * sr:
            raise AudioError(f"{path}: too long ({n / sr:.1f} s; at most {max_seconds:g} s): split it into shorter "
                             "files or segments")
    try:
        data, sr = sf.read(str(path), start=start_frame, stop=stop_frame, dtype="float32", always_2d=True)
    except Exception as e:  # a header that reads but data that does not (truncated or corrupt file)
        raise AudioError(f"{path}: cannot decode the audio data: {e}") from None
    if data.shape[1] > 1:
        if not allow_stereo:
            raise AudioError(f"{path}: {data.shape[1]} channels; expected mono audio")
        data = data.mean(axis=1, keepdims=True)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples" + (f" in segment {start}..{end}s" if start or end >= 0 else ""))
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN/Inf samples")
    return np.ascontiguousarray(data[:, 0]), int(sr)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float = -1.0,
    allow_stereo: bool = False,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Read ``path`` (optionally the segment ``start``..``end`` seconds) as a float32 tensor of shape ``(T,)``,
    resampled to ``sample_rate`` (None keeps the file's rate); checks as in :func:`read_audio`."""
    data, sr = read_audio(path, start, end, allow_stereo, max_seconds)
    wav = torch.from_numpy(data)
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    return wav


@functools.lru_cache(maxsize=32)
def resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    """torchaudio's band-limited sinc resampler with its kernel built once per rate pair
    (``torchaudio.functional.resample`` rebuilds it on every call: 2-8x slower on short utterances)."""
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def _sinc_kernel_taps(orig_freq: int, new_freq: int) -> int:
    g = math.gcd(orig_freq, new_freq)
    return (new_freq // g) * (orig_freq // g + 16)


def resample(wav: torch.Tensor | np.ndarray, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample a 1-D signal (tensor or float32 array) -> float32 tensor.

    torchaudio's sinc resampler for the usual rate pairs (its output is what the models were trained on); soxr for
    pairs with a huge reduced ratio (e.g. 44101 -> 16000), where torchaudio's kernel would not fit in memory."""
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)) if isinstance(wav, np.ndarray) else wav
    if orig_freq == new_freq:
        return x
    if _sinc_kernel_taps(orig_freq, new_freq) > MAX_SINC_KERNEL_TAPS:
        import soxr

        y = soxr.resample(x.detach().cpu().numpy().astype(np.float32), orig_freq, new_freq, quality="HQ")
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(x.device)
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
    return audio_info(path).duration
