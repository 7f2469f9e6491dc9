"""Iterative refinement shared by the mask-predict style decoders (Mask-CTC, Imputer, CMLM; Ghazvininejad et al.,
2019, arXiv:1904.09324): one loop over an immutable state, and the vectorized pieces every step uses.

A decoder supplies ``step(state) -> state``; the loop runs a fixed number of passes regardless of the length (stopping
early only when nothing is left to fill), so latency does not grow with the output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from narspeech.nn.mask import make_pad_mask


class RefineState(NamedTuple):
    """What one refinement pass reads and writes (never mutated: passes return ``state._replace(...)``)."""

    tokens: torch.Tensor  # (B, L) current ids; masked positions hold the mask id
    lens: torch.Tensor  # (B,) valid positions
    masked: torch.Tensor  # (B, L) bool, True where the position is still to be predicted (never at padding)
    remaining: torch.Tensor  # (B,) passes left for this row (how many masks a pass fills is spread over them)
    passes: int = 0  # model passes done so far


def refine(state: RefineState, step: Callable[[RefineState], RefineState], max_passes: int) -> RefineState:
    """Run ``step`` up to ``max_passes`` times; stops early once no position of any row is masked."""
    for _ in range(max_passes):
        if not bool(state.masked.any()):
            break
        state = step(state)._replace(passes=state.passes + 1)
    return state


def fill_most_confident(
    tokens: torch.Tensor, masked: torch.Tensor, pred: torch.Tensor, conf: torch.Tensor, num: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill, in each row, the ``num[b]`` masked positions with the highest ``conf`` by ``pred``.

    ``tokens``, ``pred`` (B, L) ids; ``masked`` (B, L) bool; ``conf`` (B, L) scores; ``num`` (B,) how many to fill
    (clamped to the masked count) -> new tokens, new mask. Works on any (B, L) view, e.g. blocks reshaped to rows.
    """
    score = conf.masked_fill(~masked, float("-inf"))
    order = score.argsort(dim=-1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.size(-1), device=order.device).expand_as(order))
    chosen = (rank < num.unsqueeze(-1)) & masked
    return torch.where(chosen, pred, tokens), masked & ~chosen


def uniform_mask(
    tokens: torch.Tensor, lens: torch.Tensor, mask_id: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time masking of CMLM / Mask-CTC: per row, the number of masks is uniform in 1..L (L = its length)
    and the masked positions are a uniform random subset.

    ``tokens`` (B, L) ids (padding: anything), ``lens`` (B,) -> masked tokens (B, L), mask (B, L) bool.
    Rows of length 0 get no mask.
    """
    B, L = tokens.shape
    num = _uniform_count(lens, generator)  # drawn before the noise (the order fixes seeded draws)
    noise = torch.rand(B, L, generator=generator, device=tokens.device)
    mask = _lowest(noise, lens, num)
    return tokens.masked_fill(mask, mask_id), mask


def lowest_scores_mask(
    scores: torch.Tensor, lens: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per row, a number of masks uniform in 1..L (L = its length) on the positions with the lowest ``scores``.

    ``scores`` (B, L) (e.g. CTC token confidences: the masks of Mask-CTC decoding at a random threshold), ``lens``
    (B,) -> mask (B, L) bool. Rows of length 0 get no mask."""
    return _lowest(scores, lens, _uniform_count(lens, generator))


def _uniform_count(lens: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(lens.size(0), generator=generator, device=lens.device)
    return torch.minimum((u * lens).floor().long() + 1, lens)  # uniform in 1..len (0 for empty rows)


def _lowest(scores: torch.Tensor, lens: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
    pad = make_pad_mask(lens, scores.size(1))
    rank = scores.float().masked_fill(pad, float("inf")).argsort(dim=-1).argsort(dim=-1)
    return (rank < num.unsqueeze(-1)) & ~pad
