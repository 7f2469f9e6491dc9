"""The abstract ASR model and its decoding options."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from narspeech.base import Model


@dataclass(frozen=True)
class ASRDecodeOptions:
    """Decoding options shared by the ASR models."""

    method: str = "greedy"  # "greedy" (best path) or "beam" (CTC prefix beam search)
    beam_size: int = 10  # hypotheses kept by beam search


class ASRModel(Model):
    """Speech -> token ids. ``batch`` holds ``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,), and for training
    ``tokens`` (B, L) padded with -1 and ``token_lens`` (B,)."""

    @abc.abstractmethod
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions) -> list[list[int]]:
        """Decode a batch: ``feats`` (B, T, D), ``feat_lens`` (B,) -> token ids per utterance."""

    @abc.abstractmethod
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (B, T, D), ``feat_lens`` (B,) -> encoder output (B, T', d), valid lengths (B,)."""
