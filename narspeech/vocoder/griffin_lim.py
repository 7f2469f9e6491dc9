"""Griffin-Lim (Griffin & Lim, 1984): log-mel -> waveform with no trained model, the vocoder of last resort and the
baseline of the neural ones.

The linear magnitude is recovered from the mel energies with the pseudo-inverse of the mel basis, clamped at zero (as
ESPnet's ``logmel2linear``; librosa's NNLS ``mel_to_stft`` is ~100x slower for the same measured quality), then the phase by torchaudio's fast Griffin-Lim (momentum 0.99). The STFT matches
:mod:`narspeech.audio.mel`; its frames are centred (``center=True``) half a hop earlier than the mel's, so the output
is delayed by half a hop and padded to ``frames * hop`` samples.
"""

from __future__ import annotations

import functools

import torch

from narspeech.audio.mel import MelConfig, mel_basis

N_ITER = 32  # phase iterations: quality saturates around 30-60 with momentum


MIN_MAGNITUDE = 1e-5  # the mel's own log clamp


@functools.lru_cache(maxsize=8)
def _inverse_basis(cfg: MelConfig) -> torch.Tensor:
    return torch.linalg.pinv(mel_basis(cfg).double()).float()


def mel_to_magnitude(log_mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """(T, n_mels) log-mel -> (n_fft // 2 + 1, T) STFT magnitude (pseudo-inverse of the mel basis)."""
    mel = log_mel.detach().float().cpu().exp().T
    return (_inverse_basis(cfg) @ mel).clamp_min(MIN_MAGNITUDE)


def griffin_lim(log_mel: torch.Tensor, cfg: MelConfig = MelConfig(), n_iter: int = N_ITER) -> torch.Tensor:
    """(T, n_mels) log-mel -> (T * hop,) waveform in [-1, 1]."""
    import torchaudio.functional as AF

    frames = log_mel.size(0)
    mag = mel_to_magnitude(log_mel, cfg)
    wav = AF.griffinlim(mag.unsqueeze(0), torch.hann_window(cfg.win_length), cfg.n_fft, cfg.hop_length,
                        cfg.win_length, power=1.0, n_iter=n_iter, momentum=0.99, length=None, rand_init=False)[0]
    shift = cfg.hop_length // 2
    wav = torch.nn.functional.pad(wav, (shift, 0))[: frames * cfg.hop_length]
    wav = torch.nn.functional.pad(wav, (0, frames * cfg.hop_length - wav.numel()))
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    return wav / peak * 0.95 if peak > 0.95 else wav
