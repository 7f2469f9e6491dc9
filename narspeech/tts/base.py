"""The abstract TTS model (text token ids -> log-mel) and its frozen synthesis options."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from narspeech.base import Model


@dataclass(frozen=True)
class TTSOptions:
    """Synthesis controls; each model reads the fields it supports."""

    speed: float = 1.0  # speaking rate: durations are divided by this (2.0 = half the frames)
    pitch_shift: float = 0.0  # semitones added to the predicted pitch contour
    pitch_scale: float = 1.0  # scales the contour's excursions around the speaker's mean (0 = monotone)
    energy_scale: float = 1.0  # multiplies the predicted frame energy


class TTSModel(Model):
    """Phoneme/character ids -> log-mel frames. ``batch`` holds ``tokens`` (B, N) padded with -1, ``token_lens``
    (B,), ``mel`` (B, T, n_mels) hifi-gan log-mel padded with 0, ``mel_lens`` (B,), ``pitch`` and ``energy`` (B, T)
    normalised frame values, and optionally ``durations`` (B, N) frames per token from a TextGrid."""

    @abc.abstractmethod
    def infer(self, tokens: torch.Tensor, token_lens: torch.Tensor, opts: TTSOptions = TTSOptions()) -> dict:
        """Synthesise a batch: ``tokens`` (B, N), ``token_lens`` (B,) -> ``{"mel": (B, T, n_mels) log-mel,
        "mel_lens": (B,)}`` plus what the model knows (``durations`` (B, N), ``pitch`` (B, N) in Hz, ...)."""
