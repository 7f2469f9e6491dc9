"""ASR features: 80-dim Kaldi fbank (torchaudio.compliance.kaldi), global CMVN, SpecAugment, speed perturbation."""

from __future__ import annotations

import math
import random

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import nn

from narspeech.audio.io import AudioError, resample

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
FRAME_SHIFT_MS = 10.0
FRAME_LENGTH_MS = 25.0
# Kaldi fbank expects 16-bit integer scale; our waveforms are in [-1, 1].
INT16_SCALE = 32768.0
# Floor of the log mel energies (16-bit scale): digital silence would otherwise give log(float eps) = -36, far
# below any real recording's noise floor (1 LSB of white noise already gives ~5), and such outliers dominate CMVN.
LOG_ENERGY_FLOOR = 0.0
# The encoders' subsampling front-ends (x4 and x2) need at least this many fbank frames for one output frame.
MIN_ENCODER_FRAMES = 7


def min_samples(sample_rate: int = SAMPLE_RATE, frames: int = MIN_ENCODER_FRAMES) -> int:
    """The fewest samples that give ``frames`` fbank frames (inverse of :func:`num_frames`)."""
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    hop = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return win + (frames - 1) * hop


def check_length(num_samples: int, sample_rate: int = SAMPLE_RATE, frames: int = MIN_ENCODER_FRAMES) -> None:
    """:class:`AudioError` (without a file name: the caller adds it) when ``num_samples`` give fewer than ``frames``
    fbank frames; checked before feature extraction, whose library asserts on short input."""
    need = min_samples(sample_rate, frames)
    if num_samples < need:
        raise AudioError(f"too short ({num_samples} samples = {1000 * num_samples / sample_rate:.1f} ms; "
                         f"at least {1000 * need / sample_rate:.0f} ms needed)")


def fbank(wav: torch.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS, dither: float = 0.0) -> torch.Tensor:
    """Log mel filterbank of a mono waveform ``(T,)`` -> ``(frames, num_mel_bins)``, as Kaldi computes it.

    :class:`AudioError` when the waveform is shorter than one frame (25 ms) or its features are not finite
    (samples so large that their energy overflows float32)."""
    check_length(wav.numel(), sample_rate, frames=1)
    feats = kaldi.fbank(
        wav.unsqueeze(0) * INT16_SCALE,
        num_mel_bins=num_mel_bins,
        frame_length=FRAME_LENGTH_MS,
        frame_shift=FRAME_SHIFT_MS,
        dither=dither,
        energy_floor=0.0,
        sample_frequency=sample_rate,
    ).clamp_min(LOG_ENERGY_FLOOR)
    if not torch.isfinite(feats).all():
        raise AudioError(f"features are not finite (peak sample {float(wav.abs().max()):.3g}; expected about [-1, 1])")
    return feats


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Number of fbank frames of ``num_samples`` samples (snip_edges=True, as in :func:`fbank`)."""
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    hop = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return 0 if num_samples < win else 1 + (num_samples - win) // hop


def speed_perturb(wav: torch.Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Kaldi/sox-style speed perturbation (tempo and pitch change together) by resampling.

    Playing ``sample_rate * factor`` samples per second at ``sample_rate`` is the same as resampling from
    ``sample_rate * factor`` to ``sample_rate`` — what lhotse and Kaldi's ``sox speed`` do.
    """
    if factor == 1.0:
        return wav
    return resample(wav, int(round(sample_rate * factor)), sample_rate)


class GlobalCMVN(nn.Module):
    """Global mean/variance normalization with statistics computed over the training set (stored in the model)."""

    def __init__(self, dim: int = NUM_MEL_BINS) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.istd.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, D) features -> normalized (B, T, D)."""
        return (x - self.mean) * self.istd


class CMVNAccumulator:
    """Running sums for global CMVN (float64 to keep the variance exact over many frames)."""

    def __init__(self, dim: int = NUM_MEL_BINS) -> None:
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sumsq = torch.zeros(dim, dtype=torch.float64)
        self.count = 0

    def add(self, feats: torch.Tensor) -> None:
        f = feats.double()
        self.sum += f.sum(0)
        self.sumsq += (f * f).sum(0)
        self.count += f.shape[0]

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count == 0:
            raise ValueError("no frames accumulated for CMVN")
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean * mean).clamp_min(1e-10)
        return mean.float(), var.sqrt().float()


class SpecAugment(nn.Module):
    """SpecAugment (Park et al., 2019): time warping is left out (small gain, costly); frequency and time masks.

    Time masks are sized relative to each utterance's length (``max_time_ratio``) so short and long utterances
    are masked alike, as in ESPnet's ``time_mask_width_ratio_range``.
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        max_freq_width: int = 27,
        num_time_masks: int = 2,
        max_time_ratio: float = 0.05,
    ) -> None:
        super().__init__()
        self.num_freq_masks = num_freq_masks
        self.max_freq_width = max_freq_width
        self.num_time_masks = num_time_masks
        self.max_time_ratio = max_time_ratio

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, D) normalized features, ``x_lens``: (B,) valid frames -> masked copy (B, T, D)."""
        if not self.training:
            return x
        B, T, D = x.shape
        mask = torch.zeros(B, T, D, dtype=torch.bool, device=x.device)
        for b in range(B):
            for _ in range(self.num_freq_masks):
                w = random.randint(0, self.max_freq_width)
                f0 = random.randint(0, max(0, D - w))
                mask[b, :, f0 : f0 + w] = True
            n = int(x_lens[b])
            max_w = max(1, int(math.floor(n * self.max_time_ratio)))
            for _ in range(self.num_time_masks):
                w = random.randint(0, max_w)
                t0 = random.randint(0, max(0, n - w))
                mask[b, t0 : t0 + w, :] = True
        # masked regions get 0 = the global mean after CMVN
        return x.masked_fill(mask, 0.0)
