"""Named loss terms: every model returns ``dict[name, LossTerm]``; the trainer sums ``weight * value``."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class LossTerm(NamedTuple):
    value: torch.Tensor  # scalar, averaged over the utterances of the (local) batch
    weight: float = 1.0  # contribution to the total; 0 logs the term without training on it


def total_loss(terms: dict[str, LossTerm]) -> torch.Tensor:
    """Weighted sum of the terms (what gets back-propagated)."""
    if not terms:
        raise ValueError("model returned no loss terms")
    return sum(t.weight * t.value for t in terms.values() if t.weight != 0.0)  # type: ignore[return-value]


def label_smoothing_kl(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Sum over tokens of KL(q || softmax(logits)), ``q`` = ``1 - smoothing`` on the target and ``smoothing / (V - 1)``
    on every other id (label smoothing, Szegedy et al., 2016, in ESPnet's LabelSmoothingLoss form).

    ``logits`` (..., V), ``targets`` (...) ids, -1 = no loss. KL rather than cross-entropy: both have the same
    gradient, but KL is 0 at the smoothed optimum, so the logged loss shows how close training is to it.
    """
    logp = logits.float().log_softmax(-1)
    valid = targets >= 0
    nll = -logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    if smoothing > 0:
        off = smoothing / (logits.size(-1) - 1)
        others = -logp.sum(-1) - nll  # sum of -log p over the non-target ids
        neg_entropy = (1 - smoothing) * math.log(1 - smoothing) + smoothing * math.log(off)  # sum q log q
        tok = (1 - smoothing) * nll + off * others + neg_entropy
    else:
        tok = nll
    return tok.masked_fill(~valid, 0.0).sum()
