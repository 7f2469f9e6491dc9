"""CTC utilities shared by the NAR models (Graves et al., 2006): batched greedy decoding, prefix beam search,
forced alignment (for Imputer expert alignments and TTS aligners), the frames of each token of a path and the mean
over frame intervals (token-level acoustic embeddings of Mask-CTC)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
import torchaudio.functional as AF

from narspeech.nn.mask import make_pad_mask


@dataclass(frozen=True)
class CTCHypothesis:
    tokens: tuple[int, ...]  # token ids, blanks and repeats removed
    score: float  # log-probability (beam search: of the prefix, summed over alignments)


def ctc_greedy(log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path decoding of a batch without a loop over time.

    ``log_probs``: (B, T, V) (or unnormalized scores), ``lens``: (B,) valid frames -> token ids per utterance.
    """
    best = log_probs.argmax(-1)  # (B, T)
    return ctc_collapse(best, lens, blank)


def ctc_collapse(frames: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Collapse frame-level labels ``frames`` (B, T): merge repeats, drop blanks and padding."""
    keep = torch.ones_like(frames, dtype=torch.bool)
    keep[:, 1:] = frames[:, 1:] != frames[:, :-1]
    keep &= frames != blank
    keep &= ~make_pad_mask(lens, frames.size(1))
    counts = keep.sum(1).tolist()
    flat = frames[keep].tolist()
    out, i = [], 0
    for c in counts:
        out.append(flat[i : i + c])
        i += c
    return out


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_prefix_beam_search(
    log_probs: torch.Tensor, beam_size: int = 10, blank: int = 0, token_prune: int | None = None
) -> list[CTCHypothesis]:
    """CTC prefix beam search of ONE utterance (Hannun et al., 2014, without a language model).

    ``log_probs``: (T, V) log posteriors of the valid frames. Returns up to ``beam_size`` hypotheses, best first.
    A loop over time is unavoidable here; per frame only the ``token_prune`` most likely tokens (default: beam
    size) are expanded, so the cost is O(T * beam * prune).
    """
    T, V = log_probs.shape
    prune = min(V, token_prune or beam_size)
    lp = log_probs.float().cpu()
    top_v, top_i = lp.topk(prune, dim=-1)
    top_v, top_i = top_v.tolist(), top_i.tolist()
    blank_lp = lp[:, blank].tolist()
    # prefix -> (log P ending in blank, log P ending in non-blank)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for t in range(T):
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], pb: float, pnb: float) -> None:
            if pb == -math.inf and pnb == -math.inf:
                return  # impossible extension (e.g. a repeat with no blank in between)
            cur = nxt.get(prefix)
            if cur is None:
                nxt[prefix] = [pb, pnb]
            else:
                cur[0] = _logaddexp(cur[0], pb)
                cur[1] = _logaddexp(cur[1], pnb)

        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            add(prefix, total + blank_lp[t], -math.inf)  # emit blank
            last = prefix[-1] if prefix else None
            for v, c in zip(top_v[t], top_i[t]):
                if c == blank:
                    continue
                if c == last:
                    add(prefix, -math.inf, pnb + v)  # repeat collapses into the same prefix
                    add(prefix + (c,), -math.inf, pb + v)  # a blank separated the repeat: new token
                else:
                    add(prefix + (c,), -math.inf, total + v)
        ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return [CTCHypothesis(k, _logaddexp(*v)) for k, v in sorted(beams.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)]


def ctc_forced_align(log_probs: torch.Tensor, tokens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """Most likely CTC alignment of ``tokens`` (L,) to ``log_probs`` (T, V) -> frame labels (T,) incl. blanks.

    Wraps ``torchaudio.functional.forced_align``; raises ValueError naming the lengths when no alignment exists.
    """
    T, L = log_probs.size(0), tokens.numel()
    repeats = int((tokens[1:] == tokens[:-1]).sum()) if L > 1 else 0
    if L + repeats > T:
        raise ValueError(f"cannot align {L} tokens ({repeats} repeats) to {T} frames")
    labels, _ = AF.forced_align(log_probs.unsqueeze(0).float(), tokens.unsqueeze(0).int(), blank=blank)
    return labels[0]


def ctc_forced_align_batch(
    log_probs: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, blank: int = 0,
    num_frames: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ctc_forced_align` of every utterance of a batch.

    ``log_probs`` (B, T, V), ``lens`` (B,) valid frames, ``tokens`` (B, L) padded with -1, ``token_lens`` (B,)
    -> frame labels (B, ``num_frames`` or T) (blank where there is no alignment and at padding), ``aligned`` (B,)
    bool: False for utterances without frames or with more tokens (+ repeats) than frames; an empty transcript
    aligns to all blanks. torchaudio aligns one utterance at a time: a loop over the batch, not over time.
    """
    B = log_probs.size(0)
    paths = torch.full((B, num_frames or log_probs.size(1)), blank, dtype=torch.long, device=log_probs.device)
    aligned = torch.zeros(B, dtype=torch.bool, device=log_probs.device)
    for b, (n, m) in enumerate(zip(lens.tolist(), token_lens.tolist())):
        if n == 0:
            continue
        if m > 0:
            try:
                paths[b, :n] = ctc_forced_align(log_probs[b, :n], tokens[b, :m], blank)
            except ValueError:
                continue
        aligned[b] = True
    return paths, aligned


def ctc_path_tokens(path: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which token of its collapsed sequence each frame of CTC paths belongs to, without a loop over time.

    ``path`` (B, T) frame labels incl. blanks (a best path or a forced alignment), ``lens`` (B,) valid frames
    -> frame_token (B, T): the index of the token occurrence the frame is labelled with (a run of equal labels is
    one occurrence), -1 at blanks and padding; counts (B,) tokens per row. E.g. [_, a, a, _, a, b, b] ->
    [-1, 0, 0, -1, 1, 2, 2].
    """
    T = path.size(1)
    in_token = (path != blank) & ~make_pad_mask(lens, T)
    start = torch.ones_like(in_token)
    start[:, 1:] = path[:, 1:] != path[:, :-1]
    emit = start & in_token  # first frame of each token's run
    idx = emit.long().cumsum(1) - 1
    return torch.where(in_token, idx, torch.full_like(idx, -1)), emit.sum(1)


def token_spans(frame_token: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The frame interval of each token of a path (its frames are one run, so an interval says it all).

    ``frame_token`` (B, T) token index per frame (-1: none; see :func:`ctc_path_tokens`), ``num_tokens`` L
    -> (B, L, 2) [first frame, last frame + 1); [0, 0) for tokens without frames.
    """
    B, T = frame_token.shape
    slot = torch.where(frame_token >= 0, frame_token, torch.full_like(frame_token, num_tokens))
    t = torch.arange(T, device=frame_token.device).expand(B, T)
    start = torch.full((B, num_tokens + 1), T, dtype=torch.long, device=frame_token.device).scatter_reduce(1, slot, t, "amin")
    end = torch.zeros(B, num_tokens + 1, dtype=torch.long, device=frame_token.device).scatter_reduce(1, slot, t + 1, "amax")
    spans = torch.stack([start, end], -1)[:, :num_tokens]
    return torch.where(spans[..., 1:] > 0, spans, torch.zeros_like(spans))


def frame_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, T, d) -> (B, T + 1, d) float32 running sums from 0, so that any interval's sum is one subtraction
    (:func:`span_sums`)."""
    return nn.functional.pad(x.float().cumsum(1), (0, 0, 1, 0))


def span_sums(cum: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the frame vectors over each interval, without a loop over frames.

    ``cum`` (B, T + 1, d) running sums from :func:`frame_cumsum`, ``spans`` (B, L, 2) [start, end) -> sums (B, L, d)
    (zeros for empty intervals), frame counts (B, L).
    """
    idx = spans.clamp(0, cum.size(1) - 1)
    d = cum.size(-1)
    lo = cum.gather(1, idx[..., 0].unsqueeze(-1).expand(-1, -1, d))
    hi = cum.gather(1, idx[..., 1].unsqueeze(-1).expand(-1, -1, d))
    counts = (idx[..., 1] - idx[..., 0]).clamp_min(0)
    return (hi - lo) * (counts > 0).unsqueeze(-1), counts


def span_means(cum: torch.Tensor, spans: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean frame vector over each interval: :func:`span_sums` / frame counts -> means (B, L, d) (zeros for empty
    intervals), frame counts (B, L)."""
    sums, counts = span_sums(cum, spans)
    return sums / counts.clamp_min(1).unsqueeze(-1), counts


def ctc_tokens_with_frames(
    log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CTC greedy tokens with a confidence per token: the highest best-path posterior over its run of frames (as in
    the Mask-CTC paper and ESPnet), and the frames of each token, without a loop over time.

    ``log_probs`` (B, T, V), ``lens`` (B,) valid frames -> tokens (B, L) padded with blank, confidences (B, L)
    probabilities (0 at padding), token counts (B,), frame_token (B, T): the token each frame's run belongs to
    (-1 at blank frames and padding; see :func:`ctc_path_tokens`). The tokens equal ``ctc_greedy``'s.
    """
    B = log_probs.size(0)
    best_lp, best = log_probs.max(-1)
    frame_token, counts = ctc_path_tokens(best, lens, blank)
    L = int(counts.max()) if B else 0
    # frames outside tokens go to an overflow column that is dropped; all frames of a run carry the same label
    slot = torch.where(frame_token >= 0, frame_token, torch.full_like(frame_token, L))
    tokens = best.new_full((B, L + 1), blank).scatter_(1, slot, best)
    conf = best_lp.new_full((B, L + 1), float("-inf")).scatter_reduce(1, slot, best_lp, "amax")
    return tokens[:, :L], conf[:, :L].exp(), counts, frame_token


def ctc_tokens_with_confidence(
    log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`ctc_tokens_with_frames` without the frame map -> tokens (B, L), confidences (B, L), counts (B,)."""
    tokens, conf, counts, _ = ctc_tokens_with_frames(log_probs, lens, blank)
    return tokens, conf, counts


def ctc_loss(
    log_probs: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, blank: int = 0
) -> torch.Tensor:
    """Mean over utterances of the per-utterance CTC loss (summed over its frames).

    ``log_probs`` (B, T, V), ``lens`` (B,), ``tokens`` (B, L) padded with -1, ``token_lens`` (B,).
    Utterances too short for their transcript give inf; ``zero_infinity`` keeps them from poisoning the batch.
    """
    targets = tokens.clamp_min(0)
    loss = nn.functional.ctc_loss(
        log_probs.transpose(0, 1).float(), targets, lens, token_lens,
        blank=blank, reduction="sum", zero_infinity=True,
    )
    return loss / log_probs.size(0)
