"""Named loss terms: every model returns ``dict[name, LossTerm]``; the trainer sums ``weight * value``."""

from __future__ import annotations

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
