#!/usr/bin/env python3
"""How much can Mask-CTC's refinement fix? Its WER with the masks chosen by the references instead of the threshold.

For a Mask-CTC model (``mask_ctc``, with or without length prediction) and a data dir with references, this decodes
each utterance (batch 1) four ways from the same CTC best path and prints the WER of each:

- ``greedy``: the CTC best path itself;
- ``refine``: Mask-CTC decoding, the tokens below ``--threshold`` masked (what ``narspeech decode --method refine``
  does);
- ``oracle``: exactly the wrong CTC tokens masked (substituted and inserted ones in the edit-distance alignment of
  the best path to the reference, ``narspeech.nat.length.align_to_references``; with a length head also the token
  after each gap that misses reference tokens, the one before it at the end), and nothing else;
- ``refine+oracle``: both sets of masks.

Without length prediction nothing is inserted, and a masked token is re-predicted but never deleted (unless the
model has ``mlm_deletion``): ``oracle`` is then a bound on what refinement can do given CTC's token count. The
counts of the masks it sets are printed too. For a model with ``mlm_deletion`` also how well the decoder's
probability of "no token" (one pass over the threshold's masks, as decoding's first) tells the masked tokens that
are inserted (in the alignment to the reference) from the others: its AUC, and for some deletion thresholds how
many masks of each kind reach them (what deleting there would fix and break, before the later passes).
Usage: tools/mask_oracle.py MODEL.pt DATA_DIR [--threshold 0.999] [--iterations 10] [--length-steps 1]
       [--deletion-threshold 0.2]
"""
import argparse

import torch

from narspeech.asr.transcribe import ctc_outputs
from narspeech.data.kaldi import read_data_dir
from narspeech.metrics import word_error_rate
from narspeech.nat.ctc import ctc_tokens_with_frames, token_spans
from narspeech.nat.length import IGNORE, align_to_references
from narspeech.text.tokenizer import BLANK_ID, MASK_ID
from narspeech.asr.task import load_asr_model

WAYS = ("greedy", "refine", "oracle", "refine+oracle")
DELETION_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def oracle_mask(hyp: torch.Tensor, n: int, ref: list[int], lengths: bool) -> torch.Tensor:
    """(n,) bool: the wrong tokens of the hypothesis ``hyp[:n]`` against ``ref`` (and, with ``lengths``, a token beside
    each gap missing reference tokens)."""
    aligned, missing = align_to_references(hyp[:n].unsqueeze(0), torch.tensor([n]), [ref])
    aligned, missing = aligned[0, :n], missing[0]
    wrong = aligned != hyp[:n]  # substituted, and inserted (IGNORE matches no token)
    if lengths and n > 0:
        gaps = missing.nonzero().flatten().clamp_max(n - 1)  # gap g lies before token g; the last one after token n-1
        wrong[gaps] = True
    return wrong


def no_token_probs(model, tokens, lens, masked, h, h_lens, spans, log_probs) -> torch.Tensor:
    """(n,) the decoder's probability of "no token" (the blank id) at the ``masked`` (1, L) positions of one pass, as
    the first pass of decoding computes it (a model with ``mlm_deletion``)."""
    cum = model._frame_sums(h, log_probs, h_lens) if spans is not None else None
    inp = tokens.masked_fill(masked, MASK_ID)
    logits = model.decoder(inp, lens.clamp_min(1), h, h_lens, model._acoustic_inputs(cum, spans))
    return (logits + model.never_predicted_deleting).softmax(-1)[..., BLANK_ID][masked]


def print_deletion_separation(inserted: list[float], kept: list[float]) -> None:
    if not inserted or not kept:
        print(f"  no-token AUC: undefined ({len(inserted)} inserted, {len(kept)} other masked tokens)")
        return
    ins, oth = torch.tensor(inserted), torch.tensor(kept)
    auc = (ins.unsqueeze(1) > oth).double().mean() + 0.5 * (ins.unsqueeze(1) == oth).double().mean()
    print(f"  no-token AUC (inserted masked tokens above the others): {float(auc):.3f} "
          f"({len(inserted)} inserted, {len(kept)} other masked tokens)")
    for t in DELETION_THRESHOLDS:
        print(f"    P(no token) >= {t}: inserted {int((ins >= t).sum())}, others {int((oth >= t).sum())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--threshold", type=float, default=0.999, help="refine masks the CTC tokens below this")
    ap.add_argument("--iterations", type=int, default=10, help="K refinement iterations")
    ap.add_argument("--length-steps", type=int, default=0, help="length prediction in the first N iterations only")
    ap.add_argument("--deletion-threshold", type=float, default=0.0,
                    help="mlm_deletion: delete a mask at this 'no token' probability (0: argmax; above 1: never)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, cfg = load_asr_model(args.model)
    model.eval()
    if cfg.model.name != "mask_ctc":
        raise SystemExit(f"{args.model}: not a Mask-CTC model ({cfg.model.name})")
    lengths = model.length_head is not None
    refs: list[str] = []
    hyps: dict[str, list[str]] = {w: [] for w in WAYS}
    n_masks = {w: 0 for w in WAYS[1:]}
    n_tokens = 0
    skipped: list[str] = []
    no_token: dict[bool, list[float]] = {True: [], False: []}  # first-pass P(no token) at inserted / other masks
    with torch.inference_mode():
        for u, h, h_lens, log_probs in ctc_outputs(model, read_data_dir(args.data), skipped):
            tokens, conf, lens, frame_token = ctc_tokens_with_frames(log_probs, h_lens)
            n = int(lens[0])
            n_tokens += n
            spans = token_spans(frame_token, tokens.size(1)) if model.acoustic_proj is not None else None
            below = conf[0, :n] < args.threshold
            wrong = oracle_mask(tokens[0], n, tok.encode(u.text), lengths)
            refs.append(u.text)
            hyps["greedy"].append(tok.decode(tokens[0, :n].tolist()))
            if model.mlm_deletion and bool(below.any()):
                aligned, _ = align_to_references(tokens[:, :n], lens, [tok.encode(u.text)])
                is_inserted = (aligned[0] == IGNORE)[below]
                probs = no_token_probs(model, tokens[:, :n], lens, below.unsqueeze(0), h, h_lens,
                                       None if spans is None else spans[:, :n], log_probs)
                for p, ins in zip(probs.tolist(), is_inserted.tolist()):
                    no_token[ins].append(p)
            for way, m in zip(WAYS[1:], (below, wrong, below | wrong)):
                n_masks[way] += int(m.sum())
                masked = m.unsqueeze(0)
                if not bool(masked.any()):
                    hyps[way].append(hyps["greedy"][-1])
                    continue
                state = model.refine_tokens(tokens.masked_fill(masked, MASK_ID), lens, masked, h, h_lens,
                                            args.iterations, spans, log_probs, 0.0, args.length_steps,
                                            args.deletion_threshold)
                hyps[way].append(tok.decode(state.tokens[0, : int(state.lens[0])].tolist()))
    if not refs:
        raise SystemExit(f"{args.data}: no readable utterance ({len(skipped)} skipped)")
    print(f"{args.model} on {args.data}: {len(refs)} utterances ({len(skipped)} skipped), {n_tokens} CTC tokens; "
          f"K={args.iterations}, threshold {args.threshold}" + (f", length steps {args.length_steps}" if lengths else "")
          + (f", deletion threshold {args.deletion_threshold}" if model.mlm_deletion else ""))
    for way in WAYS:
        masks = f"  ({n_masks[way]} tokens masked)" if way in n_masks else ""
        print(f"  {way:14s} WER {word_error_rate(refs, hyps[way])}{masks}")
    if model.mlm_deletion:
        print_deletion_separation(no_token[True], no_token[False])


if __name__ == "__main__":
    main()
