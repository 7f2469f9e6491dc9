"""The model-independent pieces of the Imputer (Chan, Saharia, Hinton, Norouzi & Jaitly, 2020, arXiv:2002.08926).

The Imputer predicts a frame-level CTC alignment (one symbol per encoder frame: blank or a token) conditioned on a
partially observed one (unobserved frames hold ``<mask>``). This module holds:

- ``constrain_to_alignment`` / ``imputation_loss``: the paper's dynamic-programming loss, the marginal likelihood
  of the reference over all alignments that agree with the observed frames. At an observed frame only the
  observed symbol may be emitted, so the CTC forward algorithm over the constrained emissions computes it exactly
  (nothing observed: plain CTC; everything observed: the log-probability of that single path).
- ``block_mask``: the training-time masking of the expert alignment, block-wise like block decoding (the count
  distribution per block is this module's choice, see its docstring).
- ``block_fill_step`` / ``block_decode``: block decoding. The frames are split into blocks of B; every pass fixes,
  in every block, the most confident still-masked frame to its argmax (blank allowed), so B passes fill all
  frames whatever the length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from narspeech.nat.ctc import ctc_loss
from narspeech.nat.refine import RefineState, fill_most_confident, refine
from narspeech.nn.mask import make_pad_mask

# Noise value that sorts padded frames after every real frame inside a block (real noise is in [0, 1)).
_PAD_NOISE = 2.0


def constrain_to_alignment(log_probs: torch.Tensor, alignment: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Emission log-probs with everything but the observed symbol set to -inf at observed frames.

    ``log_probs`` (B, T, V), ``alignment`` (B, T) symbol ids (read only where observed), ``observed`` (B, T) bool
    -> (B, T, V). Unobserved frames are unchanged. The gradient reaches only the entries kept (``torch.where``
    routes none to the -inf ones), so it stays finite even where the CTC backward sees -inf emissions.
    """
    allowed = nn.functional.one_hot(alignment.long().clamp_min(0), log_probs.size(-1)).bool() | ~observed.unsqueeze(-1)
    return torch.where(allowed, log_probs, torch.full((), float("-inf"), dtype=log_probs.dtype, device=log_probs.device))


def imputation_loss(
    log_probs: torch.Tensor,
    lens: torch.Tensor,
    tokens: torch.Tensor,
    token_lens: torch.Tensor,
    alignment: torch.Tensor,
    observed: torch.Tensor,
    blank: int = 0,
) -> torch.Tensor:
    """Imputer loss: mean over utterances of -log sum over the alignments of ``tokens`` that agree with ``alignment``
    at the ``observed`` frames of prod_t p(a_t | observed alignment, x) (summed over frames, like ``ctc_loss`` in
    ``narspeech.nat.ctc``, which it equals when nothing is observed).

    ``log_probs`` (B, T, V) log posteriors, ``lens`` (B,) valid frames, ``tokens`` (B, L) padded with -1,
    ``token_lens`` (B,), ``alignment`` (B, T) frame symbols, ``observed`` (B, T) bool.
    Observed frames that no alignment of the reference agrees with make that utterance impossible: its infinite
    loss is zeroed (``zero_infinity``) instead of poisoning the batch.
    """
    # the CTC forward over the constrained emissions
    return ctc_loss(constrain_to_alignment(log_probs.float(), alignment, observed), lens, tokens, token_lens, blank)


def block_mask(
    lens: torch.Tensor,
    num_frames: int,
    block_size: int,
    generator: torch.Generator | None = None,
    full_prob: float = 0.0,
) -> torch.Tensor:
    """Frames of an alignment to hide in training, block-wise.

    The frames are split into blocks of ``block_size`` (B) from the start of each utterance. Per utterance a count
    k is drawn uniformly from 1..B, and in every block k frames chosen uniformly at random are masked (the last,
    partial block: min(k, its valid frames)). Pass j of block decoding sees exactly B - j masked frames per block, so
    the training states are the decoding states, each count equally often; k >= 1 leaves something to predict.
    With ``full_prob`` p > 0, k = B (every frame masked: the state block decoding starts from) for an utterance
    with probability p, so that state is drawn with probability p + (1 - p) / B instead of 1 / B.
    Random draws, in order: k (B,), the per-frame noise (B, num_blocks * B), and (only when p > 0) one uniform per
    utterance (B,), all from ``generator``.

    ``lens`` (B,) valid frames, ``num_frames`` T -> mask (B, T) bool, True = masked; never True at padding.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    batch, device = lens.numel(), lens.device
    num_blocks = max(1, math.ceil(num_frames / block_size))
    k = torch.randint(1, block_size + 1, (batch,), generator=generator, device=device)
    width = num_blocks * block_size
    noise = torch.rand(batch, width, generator=generator, device=device).masked_fill(make_pad_mask(lens, width), _PAD_NOISE)
    if not 0.0 <= full_prob <= 1.0:
        raise ValueError(f"full_prob must be in [0, 1], got {full_prob}")
    if full_prob > 0.0:
        full = torch.rand(batch, generator=generator, device=device) < full_prob
        k = torch.where(full, torch.full_like(k, block_size), k)
    rank = noise.view(batch, num_blocks, block_size).argsort(-1).argsort(-1)
    masked = (rank < k.view(batch, 1, 1)).view(batch, width)[:, :num_frames]
    return masked & ~make_pad_mask(lens, num_frames)


def _to_blocks(x: torch.Tensor, block_size: int, fill: float | int | bool) -> torch.Tensor:
    """(B, T) -> (B * num_blocks, block_size), the tail padded with ``fill``."""
    batch, frames = x.shape
    num_blocks = max(1, math.ceil(frames / block_size))
    pad = x.new_full((batch, num_blocks * block_size - frames), fill)
    return torch.cat([x, pad], dim=1).view(batch * num_blocks, block_size)


def block_fill_step(state: RefineState, log_probs: torch.Tensor, block_size: int) -> RefineState:
    """One block-decoding pass: in every block of ``block_size`` frames, fix the most confident masked frame to its
    argmax under ``log_probs`` (B, T, V) (exclude symbols that must never be fixed, e.g. ``<mask>``, by giving them
    -inf). ``state.tokens`` / ``state.masked`` are (B, T); padded frames are never masked, so never filled."""
    conf, pred = log_probs.max(dim=-1)
    frames = state.tokens.size(1)
    rows = _to_blocks(state.tokens, block_size, 0).size(0)
    tokens, masked = fill_most_confident(
        _to_blocks(state.tokens, block_size, 0),
        _to_blocks(state.masked, block_size, False),
        _to_blocks(pred, block_size, 0),
        _to_blocks(conf, block_size, float("-inf")),
        torch.ones(rows, dtype=torch.long, device=pred.device),
    )
    batch = state.tokens.size(0)
    return state._replace(
        tokens=tokens.view(batch, -1)[:, :frames],
        masked=masked.view(batch, -1)[:, :frames],
        remaining=(state.remaining - 1).clamp_min(0),
    )


def block_decode(
    frame_log_probs: Callable[[torch.Tensor], torch.Tensor],
    lens: torch.Tensor,
    num_frames: int,
    block_size: int,
    mask_id: int,
) -> RefineState:
    """Block decoding (the paper's inference): start from an all-masked alignment and run ``block_size`` passes of
    ``block_fill_step``; stops early only once every frame is filled (utterances shorter than a block).

    ``frame_log_probs``: alignment (B, T) with ``mask_id`` at unobserved frames -> per-frame log-probs (B, T, V)
    (one model pass); ``lens`` (B,) valid frames; ``num_frames`` T. Returns the final state: ``tokens`` (B, T) is
    the filled alignment (padding keeps ``mask_id``), ``passes`` the number of model passes made.
    """
    if block_size < 1:
        raise ValueError(f"block decoding needs iterations (the block size B) >= 1, got {block_size}")
    valid = ~make_pad_mask(lens, num_frames)
    state = RefineState(
        tokens=torch.full((lens.numel(), num_frames), mask_id, dtype=torch.long, device=lens.device),
        lens=lens,
        masked=valid,
        remaining=torch.full_like(lens, block_size),
    )
    return refine(state, lambda s: block_fill_step(s, frame_log_probs(s.tokens), block_size), block_size)
