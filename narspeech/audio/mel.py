"""TTS features on one frame grid: the log-mel of jik876/hifi-gan's ``meldataset.mel_spectrogram`` (so public HiFi-GAN
generators work on our mels), F0 from Praat (praat-parselmouth) and the frame energy.

The mel definition, exactly: reflect-pad the waveform by ``(n_fft - hop) / 2`` on both sides, STFT with ``center=False``
and a periodic Hann window of ``win_length``, magnitude ``sqrt(re^2 + im^2 + 1e-9)``, librosa's Slaney mel basis
(``fmin``..``fmax``), natural log of the mel energies clamped at 1e-5. ``T`` samples give ``T // hop`` frames; frame
``t`` covers samples ``[t * hop - (n_fft - hop) / 2, t * hop + (n_fft + hop) / 2)``, centred on ``(t + 0.5) * hop``.
Pitch and energy are computed on that same grid, so a duration in frames means the same thing for all three.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch

from narspeech.audio.io import AudioError

LOG_CLAMP = 1e-5  # hifi-gan's dynamic_range_compression clip value
MAGNITUDE_EPS = 1e-9  # hifi-gan adds this under the square root of the magnitude
PITCH_FLOOR_HZ = 65.0  # Praat's autocorrelation range, wide enough for male and female read speech
PITCH_CEILING_HZ = 800.0


@dataclass(frozen=True)
class MelConfig:
    """The feature definition (saved in TTS and vocoder model files). Defaults: hifi-gan's V1 config for LJ Speech."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0

    def state(self) -> dict:
        return asdict(self)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a waveform of ``num_samples`` samples."""
        return num_samples // self.hop_length

    def check(self) -> None:
        if self.win_length > self.n_fft or self.hop_length <= 0 or (self.n_fft - self.hop_length) % 2:
            raise ValueError(f"bad mel config {self}: need hop > 0, win <= n_fft and n_fft - hop even")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"bad mel config {self}: need 0 <= fmin < fmax <= sample_rate / 2")


@functools.lru_cache(maxsize=8)
def mel_basis(cfg: MelConfig) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised mel filterbank, as hifi-gan builds it with librosa."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                                fmin=cfg.fmin, fmax=cfg.fmax)).float()


def magnitude(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """``wav`` (T,) or (B, T) in [-1, 1] -> STFT magnitude (..., n_fft // 2 + 1, T // hop)."""
    pad = (cfg.n_fft - cfg.hop_length) // 2
    if wav.size(-1) <= pad or wav.size(-1) < cfg.hop_length:  # reflect padding needs more samples than it adds
        need = max(cfg.hop_length, pad + 1)
        raise AudioError(f"too short for one mel frame ({wav.size(-1)} samples = "
                         f"{1000 * wav.size(-1) / cfg.sample_rate:.1f} ms; at least {need} samples needed)")
    x = torch.nn.functional.pad(wav.float().unsqueeze(-2), (pad, pad), mode="reflect").squeeze(-2)
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                      window=torch.hann_window(cfg.win_length, device=wav.device), center=False,
                      return_complex=True)
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAGNITUDE_EPS)


def log_mel(wav: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """``wav`` (T,) or (B, T) -> log-mel (..., frames, n_mels), hifi-gan's definition (module docstring).

    :class:`AudioError` for a waveform shorter than one frame or with non-finite samples."""
    if not torch.isfinite(wav).all():
        raise AudioError("waveform has non-finite samples")
    mag = magnitude(wav, cfg)
    mel = torch.matmul(mel_basis(cfg).to(mag.device), mag)
    return torch.log(mel.clamp_min(LOG_CLAMP)).transpose(-1, -2)


def energy(wav: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """Frame energy (FastSpeech 2): the L2 norm of each frame's STFT magnitude, ``(T,) -> (frames,)``."""
    return magnitude(wav, cfg).norm(dim=-2)


def pitch(wav: torch.Tensor, cfg: MelConfig = MelConfig(), floor: float = PITCH_FLOOR_HZ,
          ceiling: float = PITCH_CEILING_HZ) -> torch.Tensor:
    """F0 in Hz on the mel frame grid, 0 where unvoiced: Praat's autocorrelation pitch (``to_pitch_ac``) sampled at
    the frame centres ``(t + 0.5) * hop / sample_rate``, ``(T,) -> (frames,)``."""
    import parselmouth

    frames = cfg.num_frames(wav.numel())
    if frames == 0:
        raise AudioError(f"too short for one mel frame ({wav.numel()} samples)")
    snd = parselmouth.Sound(wav.double().numpy(), sampling_frequency=cfg.sample_rate)
    # Praat needs 3 periods of the floor in a window; shorter sounds get a higher floor rather than an error
    floor = max(floor, 3.0 / max(snd.duration, 1e-6) + 1.0)
    if floor >= ceiling:
        return torch.zeros(frames)
    p = snd.to_pitch_ac(time_step=cfg.hop_length / cfg.sample_rate, pitch_floor=floor, pitch_ceiling=ceiling)
    times = (np.arange(frames) + 0.5) * cfg.hop_length / cfg.sample_rate
    f0 = np.array([p.get_value_at_time(t) for t in times], dtype=np.float64)
    return torch.from_numpy(np.nan_to_num(f0, nan=0.0)).float()


def interpolate_unvoiced(f0: torch.Tensor) -> torch.Tensor:
    """``f0`` (T,) with 0 at unvoiced frames -> linearly interpolated between voiced frames, held at the edges
    (all zeros stay zeros)."""
    voiced = f0 > 0
    if not voiced.any():
        return f0.clone()
    idx = torch.arange(f0.numel(), dtype=torch.float64)
    out = np.interp(idx.numpy(), idx[voiced].numpy(), f0[voiced].double().numpy())
    return torch.from_numpy(out).to(f0.dtype)


def mel_config_from_state(state: dict) -> MelConfig:
    return MelConfig(**state)
