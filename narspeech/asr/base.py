"""The abstract ASR model and its decoding options."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch

from narspeech.base import Model


@dataclass(frozen=True)
class ASRDecodeOptions:
    """Decoding options shared by the ASR models; each model reads the fields its methods use.

    ``method``:
      - ``greedy``: CTC best path (CTC, SC-CTC, Mask-CTC's CTC head); Imputer: one pass with every frame masked;
        AR: batched attention greedy search.
      - ``beam``: CTC prefix beam search; AR: batched attention beam search (+ CTC prefix score by ``ctc_weight``).
      - ``refine``: the model's iterative NAR decoding in ``iterations`` passes: Mask-CTC K (mask-predict on the
        CTC tokens below ``threshold``); Imputer B (block decoding).
    """

    method: str = "greedy"
    beam_size: int = 10  # hypotheses kept by beam search
    iterations: int = 10  # Mask-CTC: K refinement iterations; Imputer: B block-decoding passes
    threshold: float = 0.999  # Mask-CTC: CTC tokens whose probability is below are masked and re-predicted
    # Improved Mask-CTC: a masked span takes the predicted length only when the length head gives it at least this
    # probability, else it keeps its length (0: always, as in the paper; above 1: never)
    length_threshold: float = 0.0
    # Improved Mask-CTC: lengths are predicted in the first this many iterations only, the later ones fill masks
    # (0: in every iteration, as in the paper)
    length_steps: int = 0
    # Mask-CTC with mlm_deletion: a mask is deleted where the decoder's probability of "no token" is at least this,
    # else filled with its best token (0: where "no token" is the most probable class, as trained; above 1: never)
    deletion_threshold: float = 0.0
    ctc_weight: float = 0.3  # AR beam search: weight of the CTC prefix score (0 = attention only)
    length_bonus: float = 0.0  # AR beam search: score added per emitted token
    max_len_ratio: float = 1.0  # AR search: at most this many tokens per encoder frame


class ASRModel(Model):
    """Speech -> token ids. ``batch`` holds ``feats`` (B, T, D) raw fbank, ``feat_lens`` (B,), and for training
    ``tokens`` (B, L) padded with -1 and ``token_lens`` (B,)."""

    methods: ClassVar[tuple[str, ...]]  # the ``ASRDecodeOptions.method`` values ``infer`` accepts

    @abc.abstractmethod
    def infer(self, feats: torch.Tensor, feat_lens: torch.Tensor, opts: ASRDecodeOptions) -> list[list[int]]:
        """Decode a batch: ``feats`` (B, T, D), ``feat_lens`` (B,) -> token ids per utterance."""

    @abc.abstractmethod
    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (B, T, D), ``feat_lens`` (B,) -> encoder output (B, T', d), valid lengths (B,)."""
