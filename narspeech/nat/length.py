"""Length machinery of the mask-predict decoders with dynamic length (Improved Mask-CTC, Higuchi et al., 2021,
arXiv:2010.13270): merging runs of masks, expanding masks to predicted span lengths, inserting masks, and the
length-prediction training inputs. Tensor ops over padded (B, L) batches; no loop over positions.

The functions that move positions return an index map (old position -> new, or new -> old), so per-position values
follow the tokens (:func:`gather_positions`), or move the frame intervals themselves (:func:`expand_runs`).
Mask-CTC's acoustic embeddings are carried as frame intervals
(``spans`` (B, L, 2): [start, end) encoder frames per position, ordered along each row): a masked position owns the
audio between its unmasked neighbours (:func:`neighbour_spans`), merged runs take the union of theirs
(:func:`merge_spans`), and after a length prediction the masks a run gains go where its frames are, the others
keeping theirs (:func:`expand_runs`); training can also share a run's interval evenly among its masks
(:func:`split_spans`)."""

from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein
from torch import nn

from narspeech.nat.refine import uniform_mask
from narspeech.nn.mask import make_pad_mask
from narspeech.text.tokenizer import BLANK_ID, MASK_ID

IGNORE = -1  # target of positions without a loss
PAD_ID = BLANK_ID  # what padded token positions hold (any valid id: the decoder ignores them)


def _compact(keep: torch.Tensor, values: torch.Tensor, fill: int | bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-align the ``keep`` (B, L) positions of ``values`` (B, L) per row -> (B, L') padded with ``fill``, lens (B,)."""
    B = keep.size(0)
    lens = keep.sum(1)
    width = int(lens.max()) if B else 0
    pos = keep.long().cumsum(1) - 1
    rows = torch.arange(B, device=keep.device).unsqueeze(1).expand_as(keep)
    out = values.new_full((B, width), fill)
    out[rows[keep], pos[keep]] = values[keep]
    return out, lens


def gather_positions(values: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Per-position values moved to new positions: ``values`` (B, L, *), ``src`` (B, L') the old position of each new
    one (-1: none) -> (B, L', *), zeros where ``src`` is -1."""
    B, L = values.shape[:2]
    padded = torch.cat([values, values.new_zeros(B, 1, *values.shape[2:])], 1)  # column L: the zeros of -1
    rows = torch.arange(B, device=values.device).unsqueeze(1)
    return padded[rows, torch.where(src >= 0, src, torch.full_like(src, L))]


def delete_positions(
    delete: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor, spans: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Remove the ``delete`` (B, L) positions of each row, the others closing up in order: ``lens`` (B,) valid
    positions, ``tokens`` (B, L) ids, ``masked`` (B, L) bool, ``spans`` (B, L, 2) frame intervals or None -> the
    same four for the rows without them (width max(1, longest row); padding: PAD_ID, False, [0, 0)). A deleted
    position's frames then belong to no token, as blank frames do."""
    B, L = tokens.shape
    keep = ~delete & ~make_pad_mask(lens, L)
    src, new_lens = _compact(keep, torch.arange(L, device=tokens.device).expand(B, L), -1)
    if src.size(1) == 0:  # every row emptied: one padding column, as the decoder needs a position
        src = src.new_full((B, 1), -1)
    tokens = torch.where(src >= 0, gather_positions(tokens, src), torch.full_like(src, PAD_ID))
    return tokens, new_lens, gather_positions(masked, src), None if spans is None else gather_positions(spans, src)


def merge_spans(spans: torch.Tensor, dest: torch.Tensor, width: int) -> torch.Tensor:
    """Frame intervals of merged positions, the union of the intervals merged into each: ``spans`` (B, L, 2)
    [start, end), ``dest`` (B, L) the new position of each old one (-1: dropped; from :func:`merge_mask_runs`)
    -> (B, width, 2) (empty [0, 0) where nothing lands)."""
    B, L = dest.shape
    slot = torch.where(dest >= 0, dest, torch.full_like(dest, width))  # dropped -> overflow column
    big = torch.iinfo(spans.dtype).max
    start = spans.new_full((B, width + 1), big).scatter_reduce(1, slot, spans[..., 0], "amin")
    end = spans.new_zeros(B, width + 1).scatter_reduce(1, slot, spans[..., 1], "amax")
    out = torch.stack([start, end], -1)[:, :width]
    return torch.where(out[..., :1] == big, torch.zeros_like(out), out)


def neighbour_spans(
    spans: torch.Tensor, lens: torch.Tensor, masked: torch.Tensor, num_frames: torch.Tensor
) -> torch.Tensor:
    """Give every masked position the frames between its unmasked neighbours: [end of the previous unmasked
    position (0 if none), start of the next one (``num_frames`` if none)).

    A masked token may stand for fewer or more tokens than it shows (CTC drops letters it cannot hear, and the
    frames of a deleted token are blank frames next to it), so its audio is the whole gap its confident neighbours
    leave. ``spans`` (B, L, 2) ordered [start, end) intervals, ``lens`` (B,), ``masked`` (B, L) bool,
    ``num_frames`` (B,) valid frames -> (B, L, 2); unmasked positions and padding keep theirs. A run of masks gets
    one interval (each of them the whole gap); :func:`split_spans` shares it out.
    """
    B, L = masked.shape
    if L == 0:
        return spans
    kept = ~masked & ~make_pad_mask(lens, L)
    ends = torch.where(kept, spans[..., 1], torch.zeros_like(spans[..., 1]))
    prev_end = torch.cat([ends.new_zeros(B, 1), ends[:, :-1]], 1).cummax(1).values
    total = num_frames.to(spans.dtype).unsqueeze(1).expand(B, L)
    starts = torch.where(kept, spans[..., 0], total)
    after = torch.cat([starts[:, 1:], total[:, :1]], 1)
    next_start = after.flip(1).cummin(1).values.flip(1)
    gap = torch.stack([prev_end, torch.maximum(prev_end, next_start)], -1)
    return torch.where((masked & ~make_pad_mask(lens, L)).unsqueeze(-1), gap, spans)


def _first_of_group(group: torch.Tensor, valid: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``group`` (B, L) a group id in 0..width-1 per valid position (consecutive positions share one), ``valid``
    (B, L) -> (first position of each group (B, width + 1), size of each group (B, width + 1)); column ``width``
    collects the invalid positions."""
    B, L = group.shape
    slot = torch.where(valid, group, torch.full_like(group, width))
    pos = torch.arange(L, device=group.device).expand(B, L)
    first = torch.full((B, width + 1), L, dtype=torch.long, device=group.device).scatter_reduce(1, slot, pos, "amin")
    size = torch.zeros(B, width + 1, dtype=torch.long, device=group.device).scatter_add_(1, slot, valid.long())
    return first, size


def split_spans(spans: torch.Tensor, group: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Share each group's interval evenly among its masked positions, in order.

    ``spans`` (B, L, 2), ``group`` (B, L) a group id per position (the positions of a group are consecutive and
    hold the same interval; e.g. the source position of expanded masks, or the run of a mask), ``masked`` (B, L)
    -> (B, L, 2): the i-th of k masks of a group over [s, e) gets [s + i (e - s) // k, s + (i + 1) (e - s) // k);
    unmasked positions keep theirs. E.g. one group of 3 masks over [4, 10) -> [4, 6), [6, 8), [8, 10).
    """
    B, L = group.shape
    if L == 0:
        return spans
    new_group = torch.ones_like(masked)
    new_group[:, 1:] = group[:, 1:] != group[:, :-1]
    run = new_group.long().cumsum(1) - 1  # consecutive positions with one group id form one run
    first, size = _first_of_group(run, torch.ones_like(masked), L)
    i = torch.arange(L, device=group.device) - first.gather(1, run)
    k = size.gather(1, run).clamp_min(1)
    s, e = spans[..., 0], spans[..., 1]
    width = (e - s).clamp_min(0)
    new = torch.stack([s + torch.div(i * width, k, rounding_mode="floor"), s + torch.div((i + 1) * width, k, rounding_mode="floor")], -1)
    return torch.where(masked.unsqueeze(-1), new, spans)


def expand_runs(
    tokens: torch.Tensor,
    lens: torch.Tensor,
    masked: torch.Tensor,
    spans: torch.Tensor,
    dest: torch.Tensor,
    run_counts: torch.Tensor,
    num_frames: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give each run of masks its predicted number of masks where its frames say they are, moving no other mask.

    A run of k masks whose length head predicts c tokens: with c = k its masks stay as they are (their own
    frames). With c > k the c - k new masks are shared among the run's gaps of frames (before each mask, and after
    the last one, up to the neighbouring positions: where CTC emitted blank, as it does over a letter it drops)
    and its masks' own frames (where CTC emitted one token for two, as for doubled letters), in proportion to
    their frames (largest remainders first, ties: the earlier; a run without frames spreads them over its gaps);
    the new masks of a gap share it evenly, and a mask that gets new masks shares its frames evenly with them.
    With c < k the k - c masks with the fewest frames are deleted (ties: the later one). Splitting the run's
    frames evenly among all c masks instead (the first form) moves every mask's audio when one is added: measured
    on the mini dev set, 15 length changes at the first step cost 35 word errors that way.

    ``tokens`` (B, L) before the merge (:func:`merge_mask_runs`), ``lens`` (B,), ``masked`` (B, L), ``spans``
    (B, L, 2) the ordered [start, end) frames of each position, ``dest`` (B, L) the merged position of each
    (-1 at padding), ``run_counts`` (B, W) the new number of masks of each merged mask (ignored elsewhere),
    ``num_frames`` (B,) valid frames -> tokens (B, L'), lens (B,), masked (B, L'), spans (B, L', 2).
    E.g. a run of masks over [2, 4), [6, 9) between a token ending at frame 1 and one starting at 12 (gaps of 1, 2
    and 3 frames): count 3 -> [2, 4), [6, 7), [7, 9) (the second mask's 3 frames come before the last gap's 3);
    count 1 -> [6, 9)."""
    B, L = tokens.shape
    W = run_counts.size(1)
    dev = tokens.device
    valid = dest >= 0
    m = masked & valid
    slot = torch.where(valid, dest, torch.full_like(dest, W))
    first, size = _first_of_group(dest, valid, W)
    k = size.gather(1, slot)  # size of each position's run (1 at tokens)
    c = torch.cat([run_counts, run_counts.new_zeros(B, 1)], 1).gather(1, slot)
    d = torch.where(m, c - k, torch.zeros_like(k))  # > 0: masks to add to the run, < 0: masks to delete
    pos = torch.arange(L, device=dev).expand(B, L)
    last = m & (pos - first.gather(1, slot) == k - 1)
    start, end = spans[..., 0], spans[..., 1]
    prev_end = torch.cat([start.new_zeros(B, 1), end[:, :-1]], 1)
    next_start = torch.cat([start[:, 1:], start.new_zeros(B, 1)], 1)
    next_start = torch.where(pos + 1 < lens.unsqueeze(1), next_start, num_frames.to(start.dtype).unsqueeze(1))
    gap_before, gap_after = (start - prev_end).clamp_min(0), (next_start - end).clamp_min(0)

    def rank_in_run(score: torch.Tensor, order: torch.Tensor, candidate: torch.Tensor, run: torch.Tensor) -> torch.Tensor:
        # rank of each candidate within its run by score (high first), then order (low first); -1 elsewhere
        big = int(order.max()) + 1 if order.numel() else 1
        top = int(score.max()) + 1 if score.numel() else 1
        key = run * (top + 1) * big + (top - score) * big + order
        key = torch.where(candidate, key, torch.full_like(key, torch.iinfo(key.dtype).max))
        rank = torch.empty_like(key)
        rank.scatter_(1, key.argsort(1), torch.arange(key.size(1), device=dev).expand_as(key))
        lowest = torch.full((B, W + 2), key.size(1), dtype=rank.dtype, device=dev)
        lowest = lowest.scatter_reduce(1, torch.where(candidate, run, W + 1), rank, "amin")
        return torch.where(candidate, rank - lowest.gather(1, run.clamp(max=W + 1)), torch.full_like(rank, -1))

    # insertions: the candidates are the gap before every mask, every mask's own frames and the gap after the last
    # mask of its run; each gets a share of the new masks in proportion to its frames (largest remainders first,
    # ties: the earlier), so the new masks go where the run's audio is; a run without frames spreads them evenly
    # over its gaps
    grow = torch.cat([m & (d > 0), m & (d > 0), last & (d > 0)], 1)
    cand_w = torch.cat([gap_before, (end - start).clamp_min(0), gap_after], 1).long()
    cand_run = torch.cat([slot, slot, slot], 1)
    run_w = cand_w.new_zeros(B, W + 1).scatter_add_(1, cand_run, torch.where(grow, cand_w, 0))
    no_frames = run_w.gather(1, cand_run) == 0
    is_gap = torch.cat([torch.ones_like(m), torch.zeros_like(m), torch.ones_like(m)], 1)
    cand_w = torch.where(no_frames, is_gap.long(), cand_w)
    total = torch.where(no_frames, torch.cat([k + 1, k + 1, k + 1], 1), run_w.gather(1, cand_run)).clamp_min(1)
    add = torch.cat([d, d, d], 1).clamp_min(0)
    quota = add * cand_w
    base = quota // total
    left = add - cand_w.new_zeros(B, W + 1).scatter_add_(1, cand_run, torch.where(grow, base, 0)).gather(1, cand_run)
    order = torch.cat([3 * pos, 3 * pos + 1, 3 * pos + 2], 1)
    rem_rank = rank_in_run(quota % total, order, grow, cand_run)
    extra = torch.where(grow, base + (rem_rank < left).long(), torch.zeros_like(base))
    n_before, n_split, n_after = extra[:, :L], extra[:, L : 2 * L], extra[:, 2 * L :]
    # deletions: the masks with the fewest frames (the later on ties)
    shrink = m & (d < 0)
    width_rank = rank_in_run(-(end - start).clamp_min(0), L - pos, shrink, slot)
    keep = valid & ~(shrink & (width_rank < -d))

    # per position: new masks in the gap before it, itself (+ the new masks sharing its frames), new masks after it
    reps = torch.stack([n_before, keep.long() + n_split, n_after], -1).flatten()
    new_lens = reps.view(B, -1).sum(1)
    width = int(new_lens.max()) if B else 0
    kind = torch.arange(3, device=dev).repeat(B * L).repeat_interleave(reps)
    src = torch.arange(L, device=dev).repeat_interleave(3).repeat(B).repeat_interleave(reps)
    rows = torch.arange(B, device=dev).repeat_interleave(new_lens)
    starts = new_lens.cumsum(0) - new_lens
    out_pos = torch.arange(rows.numel(), device=dev) - starts.repeat_interleave(new_lens)
    slot_start = reps.cumsum(0) - reps
    i = torch.arange(rows.numel(), device=dev) - slot_start.repeat_interleave(reps)  # index within its slot
    n = reps.repeat_interleave(reps)
    # the frames a slot's positions share: the gap before, the position's own, the gap after
    lo = torch.where(kind == 0, prev_end[rows, src], torch.where(kind == 1, start[rows, src], end[rows, src]))
    hi = torch.where(kind == 0, start[rows, src], torch.where(kind == 1, end[rows, src], next_start[rows, src]))
    w = (hi - lo).clamp_min(0)

    def cut(j: torch.Tensor) -> torch.Tensor:  # the j-th of n even cuts of [lo, hi)
        return lo + torch.div(j * w, n, rounding_mode="floor")

    piece = torch.stack([cut(i), cut(i + 1)], -1)
    own = (kind == 1) & (i == 0)  # the position itself (a kept token or mask), first of its slot
    unsplit = own & (n == 1)
    out_tokens = tokens.new_full((B, width), PAD_ID)
    out_masked = torch.zeros(B, width, dtype=torch.bool, device=dev)
    out_spans = spans.new_zeros(B, width, 2)
    out_tokens[rows, out_pos] = torch.where(own, tokens[rows, src], torch.full_like(src, MASK_ID))
    out_masked[rows, out_pos] = torch.where(own, masked[rows, src], torch.ones_like(own))
    out_spans[rows, out_pos] = torch.where(unsplit.unsqueeze(-1), spans[rows, src], piece.to(spans.dtype))
    return out_tokens, new_lens, out_masked, out_spans


def _continues_mask_run(masked: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: True at a mask that follows a mask (the positions a run of masks merges away)."""
    follows_mask = torch.zeros_like(masked)
    follows_mask[:, 1:] = masked[:, :-1]
    return masked & follows_mask


def masked_run_spans(
    spans: torch.Tensor,
    lens: torch.Tensor,
    masked: torch.Tensor,
    num_frames: torch.Tensor,
    share_prob: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Each run of masks, with probability ``share_prob`` (drawn per run), shares out evenly and in order the
    frames between its unmasked neighbours (the new masks of a gap share it so in decoding, :func:`expand_runs`);
    the masks of the other runs keep their own intervals (as those of a run that keeps its length do).

    ``spans`` (B, L, 2) token intervals, ``lens`` (B,), ``masked`` (B, L), ``num_frames`` (B,) -> (B, L, 2)."""
    B, L = masked.shape
    run = (~_continues_mask_run(masked)).long().cumsum(1)  # one id per unmasked token and per run of masks
    shared = split_spans(neighbour_spans(spans, lens, masked, num_frames), run, masked)
    draw = torch.rand(B, L + 1, generator=generator, device=masked.device)
    share = (draw < share_prob).gather(1, run)  # one draw per run id (ids are 1..L)
    return torch.where((masked & share).unsqueeze(-1), shared, spans)


def merge_mask_runs(
    tokens: torch.Tensor, lens: torch.Tensor, masked: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge every run of consecutive masked positions into one masked position.

    ``tokens`` (B, L), ``lens`` (B,), ``masked`` (B, L) bool -> tokens (B, L'), lens (B,), masked (B, L'),
    ``spans`` (B, L'): how many original positions each position stands for (1 if unmasked, the run length if
    masked, 0 at padding), and ``dest`` (B, L): the new position of each original one (-1 at padding; for
    :func:`merge_spans`). E.g. [5, M, M, 8, M, 10] -> [5, M, 8, M, 10], spans [1, 2, 1, 1, 1],
    dest [0, 1, 1, 2, 3, 4].
    """
    B, L = tokens.shape
    valid = ~make_pad_mask(lens, L)
    keep = valid & ~_continues_mask_run(masked)
    new_tokens, new_lens = _compact(keep, tokens, PAD_ID)
    new_masked, _ = _compact(keep, masked, False)
    width = new_tokens.size(1)
    group = keep.long().cumsum(1) - 1  # merged position of every original position
    slot = torch.where(valid, group, torch.full_like(group, width))  # padding -> overflow column
    spans = torch.zeros(B, width + 1, dtype=torch.long, device=tokens.device).scatter_add_(1, slot, valid.long())
    dest = torch.where(valid, group, torch.full_like(group, -1))
    return new_tokens, new_lens, new_masked, spans[:, :width], dest


def expand_masks(
    tokens: torch.Tensor,
    lens: torch.Tensor,
    masked: torch.Tensor,
    counts: torch.Tensor,
    max_lens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each masked position by ``counts`` masks (0 deletes it); unmasked tokens are kept once.

    ``tokens``, ``masked``, ``counts`` (B, L), ``lens`` (B,) -> tokens (B, L'), lens (B,), masked (B, L'), and
    ``src`` (B, L'): the input position each output position comes from (-1 at padding; for
    :func:`gather_positions`: the masks of a span inherit its values).
    E.g. [5, M, 8, M, 10] with counts 0 and 3 at the masks -> [5, 8, M, M, M, 10], src [0, 2, 3, 3, 3, 4].
    ``max_lens`` (B,): at most this many positions per row; masks beyond it are dropped, the last spans first
    (unmasked tokens are always kept).
    """
    B, L = tokens.shape
    valid = ~make_pad_mask(lens, L)
    mask_reps = cap_mask_counts(lens, masked, counts, max_lens)
    reps = torch.where(masked, mask_reps, valid.long()).flatten()
    new_lens = reps.view(B, L).sum(1)
    width = int(new_lens.max()) if B else 0
    flat_tokens = tokens.flatten().repeat_interleave(reps)
    flat_masked = masked.flatten().repeat_interleave(reps)
    flat_src = torch.arange(L, device=tokens.device).repeat(B).repeat_interleave(reps)
    rows = torch.arange(B, device=tokens.device).repeat_interleave(new_lens)
    starts = new_lens.cumsum(0) - new_lens
    pos = torch.arange(rows.numel(), device=tokens.device) - starts.repeat_interleave(new_lens)
    out_tokens = tokens.new_full((B, width), PAD_ID)
    out_masked = torch.zeros(B, width, dtype=torch.bool, device=tokens.device)
    out_src = torch.full((B, width), -1, dtype=torch.long, device=tokens.device)
    out_tokens[rows, pos] = flat_tokens
    out_masked[rows, pos] = flat_masked
    out_src[rows, pos] = flat_src
    return out_tokens, new_lens, out_masked, out_src


def cap_mask_counts(
    lens: torch.Tensor, masked: torch.Tensor, counts: torch.Tensor, max_lens: torch.Tensor | None = None
) -> torch.Tensor:
    """``counts`` (B, L) at the ``masked`` positions (0 elsewhere and at padding: ``lens`` (B,)), cut so that no
    row has more than ``max_lens`` (B,) positions with its unmasked tokens (the last masks first; None: uncut)."""
    valid = ~make_pad_mask(lens, masked.size(1))
    mask_reps = torch.where(masked & valid, counts, torch.zeros_like(counts))
    if max_lens is not None:
        budget = (max_lens - (valid & ~masked).sum(1)).clamp_min(0).unsqueeze(1)
        before = mask_reps.cumsum(1) - mask_reps
        mask_reps = torch.minimum(mask_reps, (budget - before).clamp_min(0))
    return mask_reps


def insert_masks(
    tokens: torch.Tensor, lens: torch.Tensor, mask_id: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Insertion-simulated input of Improved Mask-CTC: masks inserted into the L + 1 gaps of each row (both ends
    included, at most one per gap), their number uniform in 1..L + 1 (``uniform_mask`` over the gaps).

    ``tokens`` (B, L), ``lens`` (B,) -> tokens (B, L'), lens (B,), masked (B, L') True at the inserted masks,
    ``src`` (B, L') the input position of each kept token (-1 at inserted masks and padding).
    """
    B, L = tokens.shape
    _, gap_chosen = uniform_mask(tokens.new_zeros(B, L + 1), lens + 1, mask_id, generator)
    valid = torch.cat([~make_pad_mask(lens, L), torch.zeros(B, 1, dtype=torch.bool, device=tokens.device)], 1)
    padded = torch.cat([tokens, tokens.new_full((B, 1), PAD_ID)], 1)
    # slots 2i and 2i+1 hold gap i and token i
    slot_tokens = torch.stack([torch.full_like(padded, mask_id), padded], 2).flatten(1)
    slot_keep = torch.stack([gap_chosen, valid], 2).flatten(1)
    slot_masked = torch.stack([torch.ones_like(valid), torch.zeros_like(valid)], 2).flatten(1)
    positions = torch.arange(L + 1, device=tokens.device).expand(B, L + 1)
    slot_src = torch.stack([torch.full_like(positions, -1), positions], 2).flatten(1)
    new_tokens, new_lens = _compact(slot_keep, slot_tokens, PAD_ID)
    new_masked, _ = _compact(slot_keep, slot_masked, False)
    new_src, _ = _compact(slot_keep, slot_src, -1)
    return new_tokens, new_lens, new_masked, new_src


def length_targets(
    tokens: torch.Tensor, lens: torch.Tensor, masked: torch.Tensor, max_span_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deletion-simulated example: merge each run of masks into one mask whose target is the run length.

    ``tokens`` (B, L) with MASK_ID where ``masked``, ``lens`` (B,) -> decoder input (B, L'), lens (B,), targets
    (B, L'): the run length at merged masks, IGNORE elsewhere and at runs longer than ``max_span_length`` (a
    clamped target would teach that long spans are shorter than they are), and ``dest`` (B, L) as in
    :func:`merge_mask_runs`.
    """
    merged, new_lens, new_masked, spans, dest = merge_mask_runs(tokens, lens, masked)
    target = torch.where(new_masked & (spans <= max_span_length), spans, torch.full_like(spans, IGNORE))
    return merged, new_lens, target, dest


def align_to_references(
    hyp: torch.Tensor, hyp_lens: torch.Tensor, refs: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimal edit-distance alignment (Levenshtein, rapidfuzz) of each hypothesis to its reference.

    ``hyp`` (B, L) ids, ``hyp_lens`` (B,), ``refs`` the B references -> per hypothesis token the reference id it is
    aligned to (a match or a substitution; IGNORE where it is inserted, and 0 at padding) (B, L), and the number of
    reference tokens missing in each gap (B, L + 1) (gap g: just before hypothesis token g; gap L: after the last).
    E.g. hyp [5, 6, 7, 8], ref [5, 9, 6, 8] -> [5, 6, IGNORE, 8], missing 1 in gap 1."""
    B, L = hyp.shape
    aligned = [[0] * L for _ in range(B)]
    missing = [[0] * (L + 1) for _ in range(B)]
    for b, (row, n, ref) in enumerate(zip(hyp.tolist(), hyp_lens.tolist(), refs)):
        for op in Levenshtein.opcodes(row[:n], ref):
            if op.tag == "delete":
                aligned[b][op.src_start : op.src_end] = [IGNORE] * (op.src_end - op.src_start)
            elif op.tag == "insert":
                missing[b][op.src_start] += op.dest_end - op.dest_start
            else:  # equal or replace: one reference token per hypothesis token
                aligned[b][op.src_start : op.src_end] = ref[op.dest_start : op.dest_end]
    device = hyp.device
    return (
        torch.tensor(aligned, dtype=torch.long, device=device).view(B, L),
        torch.tensor(missing, dtype=torch.long, device=device).view(B, L + 1),
    )


def hypothesis_token_targets(
    hyp: torch.Tensor,
    hyp_lens: torch.Tensor,
    masked: torch.Tensor,
    refs: list[list[int]],
    deletion_id: int | None = None,
) -> torch.Tensor:
    """MLM targets for a masked hypothesis (the input Mask-CTC decoding gives its decoder): at each masked token the
    reference token it is aligned to in :func:`align_to_references` (right or substituted); at inserted tokens
    IGNORE (no id is right there: a fixed-length decoder cannot delete) or, given ``deletion_id``, that id (a
    decoder that deletes the masks it fills with it learns where); IGNORE at unmasked tokens and at padding.

    ``hyp`` (B, L) ids, ``hyp_lens`` (B,), ``masked`` (B, L) bool, ``refs`` the B references -> (B, L)."""
    aligned, _ = align_to_references(hyp, hyp_lens, refs)
    if deletion_id is not None:
        aligned = aligned.masked_fill(aligned == IGNORE, deletion_id)
    keep = masked & ~make_pad_mask(hyp_lens, hyp.size(1))
    return torch.where(keep, aligned, torch.full_like(aligned, IGNORE))


def hypothesis_length_targets(
    hyp: torch.Tensor,
    hyp_lens: torch.Tensor,
    masked: torch.Tensor,
    refs: list[list[int]],
    max_span_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Length-prediction example from a real hypothesis: merge each run of masks of ``hyp`` into one mask whose
    target is the number of reference tokens it stands for in the hypothesis' alignment to its reference.

    In decoding the masks are CTC's least confident tokens, and those are where CTC drops and inserts tokens; the
    corruptions of :func:`length_training_inputs` put their masks anywhere, so their targets are almost always
    CTC's count. Here the targets come from the edit-distance alignment (Levenshtein, one optimal alignment):
    a substituted or correct token counts 1, an inserted one 0, and the reference tokens missing between two
    hypothesis tokens count for the run of masks beside them (the one to the right when both sides are masked,
    which is one run; lost when neither is: no mask can bring them back).

    ``hyp`` (B, L) ids, ``hyp_lens`` (B,), ``masked`` (B, L) bool, ``refs`` the B references -> decoder input
    (B, L') with merged masks, lens (B,), targets (B, L') (IGNORE at tokens, padding and runs standing for more than
    ``max_span_length`` tokens) and ``dest`` (B, L) as in :func:`merge_mask_runs`. E.g. hyp [5, 6, 7, 8], ref
    [5, 9, 6, 8], masks at 6, 7 -> [5, M, 8] with target 2 at M (9 missing before 6 counts for it, 7 inserted)."""
    B, L = hyp.shape
    aligned, missing_t = align_to_references(hyp, hyp_lens, refs)
    stands_t = (aligned != IGNORE).long()  # 1 if aligned to a reference token (padding too: never masked), 0 if inserted
    masked = masked & ~make_pad_mask(hyp_lens, L)
    right = torch.cat([masked, masked.new_zeros(B, 1)], 1)  # gap g's right neighbour (token g) is masked
    left = torch.cat([masked.new_zeros(B, 1), masked], 1)  # gap g's left neighbour (token g - 1) is masked
    per_pos = torch.where(masked, stands_t, torch.zeros_like(stands_t))
    per_pos = per_pos + (missing_t * right)[:, :L] + (missing_t * (left & ~right))[:, 1:]
    merged, new_lens, new_masked, _, dest = merge_mask_runs(hyp.masked_fill(masked, MASK_ID), hyp_lens, masked)
    width = merged.size(1)
    slot = torch.where(dest >= 0, dest, torch.full_like(dest, width))
    counts = per_pos.new_zeros(B, width + 1).scatter_add_(1, slot, per_pos)[:, :width]
    target = torch.where(new_masked & (counts <= max_span_length), counts, torch.full_like(counts, IGNORE))
    return merged, new_lens, target, dest


def length_training_inputs(
    target: torch.Tensor,
    lens: torch.Tensor,
    max_span_length: int,
    generator: torch.Generator | None = None,
    spans: torch.Tensor | None = None,
    num_frames: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Both corrupted copies of the references for the length loss, stacked as 2B rows (deletion-simulated first).

    ``target`` (B, L) reference ids (padding: any valid id), ``lens`` (B,), optional ``spans`` (B, L, 2) each
    reference token's frame interval and ``num_frames`` (B,) -> decoder input (2B, L'), lens (2B,), length targets
    (2B, L') (IGNORE where there is no loss), and the frame intervals of the new positions (2B, L', 2) (None
    without ``spans``): a merged mask of the deletion copy and an inserted mask of the insertion copy get the frames
    between their unmasked neighbours (:func:`neighbour_spans`), as the masks of decoding do, tokens keep theirs.
    """
    masked_in, masked = uniform_mask(target, lens, MASK_ID, generator)
    del_in, del_lens, del_tgt, del_dest = length_targets(masked_in, lens, masked, max_span_length)
    ins_in, ins_lens, ins_masked, ins_src = insert_masks(target, lens, MASK_ID, generator)
    ins_tgt = torch.where(ins_masked, 0, IGNORE)
    width = max(del_in.size(1), ins_in.size(1))

    def pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return nn.functional.pad(x, (0, width - x.size(1)), value=value)

    inp = torch.cat([pad(del_in, PAD_ID), pad(ins_in, PAD_ID)])
    tgt = torch.cat([pad(del_tgt, IGNORE), pad(ins_tgt, IGNORE)])
    new_spans = None
    if spans is not None:
        if num_frames is None:
            raise ValueError("num_frames is needed with spans")
        del_spans = merge_spans(neighbour_spans(spans, lens, masked, num_frames), del_dest, width)
        ins_spans = neighbour_spans(gather_positions(spans, pad(ins_src, -1)), ins_lens, pad(ins_masked, False), num_frames)
        new_spans = torch.cat([del_spans, ins_spans])
    return inp, torch.cat([del_lens, ins_lens]), tgt, new_spans
