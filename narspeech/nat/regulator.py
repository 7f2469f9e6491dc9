"""The length regulator of FastSpeech (Ren et al., NeurIPS 2019) and its inverse, shared by the TTS models and
FastCorrect: token states repeated by integer durations into a frame sequence, and frame values averaged back per
token (FastPitch's phoneme-level pitch and energy, Łańcucki, ICASSP 2021).

Both are single batched tensor ops (cumulative sums, ``searchsorted`` and ``gather``): no Python loop over tokens or
frames, so their cost does not grow with a loop over the sequence length.
"""

from __future__ import annotations

import torch


def durations_from_float(log_durations: torch.Tensor, token_lens: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Predicted log(1 + d) -> integer durations ``round(scale * d)`` (>= 0), 0 at padded tokens; ``(B, N)``."""
    from narspeech.nn.mask import make_pad_mask

    d = torch.clamp(torch.round(torch.expm1(log_durations.float()) * scale), min=0).long()
    return d.masked_fill(make_pad_mask(token_lens, d.size(1)), 0)


def length_regulate(h: torch.Tensor, durations: torch.Tensor, max_len: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat token states by their durations.

    ``h`` (B, N, D) token states, ``durations`` (B, N) non-negative integer frames per token (0 at padding)
    -> ``(frames (B, T, D), frame_lens (B,))`` with ``T = max_len`` or the longest total; frames past an item's total
    are 0. Token ``n`` of item ``b`` fills frames ``[sum(d[b, :n]), sum(d[b, :n+1]))``.
    """
    if (durations < 0).any():
        raise ValueError("durations must be non-negative")
    ends = durations.long().cumsum(1)  # (B, N) exclusive end frame of each token
    lens = ends[:, -1] if ends.size(1) else torch.zeros(h.size(0), dtype=torch.long, device=h.device)
    T = int(lens.max()) if max_len is None and lens.numel() else (max_len or 0)
    t = torch.arange(T, device=h.device).expand(h.size(0), T).contiguous()
    # the token of frame t is the first whose end is after t
    idx = torch.searchsorted(ends, t, right=True).clamp_max(max(h.size(1) - 1, 0))
    out = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.size(2))) if h.size(1) else h.new_zeros(h.size(0), T, h.size(2))
    valid = t < lens.unsqueeze(1)
    return out * valid.unsqueeze(-1).to(out.dtype), torch.minimum(lens, torch.tensor(T, device=lens.device))


def average_by_duration(values: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Mean of frame values over each token's frames (the inverse of :func:`length_regulate`).

    ``values`` (B, T) frame-level values, ``durations`` (B, N) with ``sum(d[b]) <= T`` -> (B, N) per-token means,
    0 for tokens of duration 0."""
    ends = durations.long().cumsum(1)
    starts = ends - durations.long()
    csum = torch.nn.functional.pad(values.float().cumsum(1), (1, 0))  # csum[:, t] = sum of values[:, :t]
    total = csum.gather(1, ends.clamp_max(values.size(1))) - csum.gather(1, starts.clamp_max(values.size(1)))
    return torch.where(durations > 0, total / durations.clamp_min(1), torch.zeros_like(total)).to(values.dtype)
