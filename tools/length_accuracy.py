#!/usr/bin/env python3
"""How well an Improved Mask-CTC length head counts the tokens of the masked spans of decoding's first step.

For each utterance of a data dir with references: CTC greedy, its tokens below ``--threshold`` masked, each run of
masks merged (as the first length step of ``refine`` does), and each run's true length taken from the
edit-distance alignment of the CTC output to the reference (``narspeech.nat.length.hypothesis_length_targets``).
Prints, over the runs, how often CTC's count is right, how often the length head is (always followed, and only
where it is at least ``--length-threshold`` sure), and how many of the head's changes fix or break a run.
Then whether any decision rule on the head could help: each run's margin, log P(CTC's count) minus the best other
count's log-probability; for margin thresholds m, how many runs would change (margin < m, to the best other count)
and how many of those changes would fix or break a run; and the AUC of the margin for telling the runs whose CTC
count is wrong from those where it is right (0.5: no information; 1: a threshold separates them). m = 0 is the
head's argmax.
Usage: tools/length_accuracy.py MODEL.pt DATA_DIR [--threshold 0.999] [--length-threshold 0.9]
"""
import argparse

import torch

from narspeech.asr.transcribe import ctc_outputs
from narspeech.data.kaldi import read_data_dir
from narspeech.nat.ctc import ctc_tokens_with_frames, token_spans
from narspeech.nat.length import IGNORE, hypothesis_length_targets, merge_mask_runs, merge_spans, neighbour_spans
from narspeech.asr.task import load_asr_model


MARGINS = (-1.0, 0.0, 0.5, 1.0, 2.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--threshold", type=float, default=0.999, help="mask CTC tokens below this probability")
    ap.add_argument("--length-threshold", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = load_asr_model(args.model)
    model.eval()
    if getattr(model, "length_head", None) is None:
        raise SystemExit(f"{args.model}: not an Improved Mask-CTC model (no length head)")
    n = {"runs": 0, "ctc": 0, "head": 0, "head_tau": 0, "changed": 0, "fixed": 0, "broken": 0, "utts": 0}
    skipped: list[str] = []
    margins: list[torch.Tensor] = []  # per run: log P(CTC count) - max over other counts
    ctc_right: list[torch.Tensor] = []
    other_right: list[torch.Tensor] = []  # the best other count is the true one
    with torch.inference_mode():
        for u, h, h_lens, log_probs in ctc_outputs(model, read_data_dir(args.data), skipped):
            hyp, conf, lens, frame_token = ctc_tokens_with_frames(log_probs, h_lens)
            masked = conf < args.threshold
            n["utts"] += 1
            if not bool(masked.any()):
                continue
            ref = tok.encode(u.text)
            inp, new_lens, tgt, dest = hypothesis_length_targets(hyp, lens, masked, [ref], model.max_span_length)
            _, _, _, run_len, _ = merge_mask_runs(hyp, lens, masked)
            spans = cum = None
            if model.acoustic_proj is not None:
                spans = neighbour_spans(token_spans(frame_token, hyp.size(1)), lens, masked, h_lens)
                spans = merge_spans(spans, dest, inp.size(1))
                cum = model._frame_sums(h, log_probs, h_lens)
            states = model.decoder.states(inp, new_lens.clamp_min(1), h, h_lens, model._acoustic_inputs(cum, spans))
            logp = model._length_logits(states, spans, cum).log_softmax(-1)
            prob, pred = logp.exp().max(-1)
            sure = torch.where(prob >= args.length_threshold, pred, run_len)
            scored = tgt != IGNORE
            t, c, p = tgt[scored], run_len[scored], pred[scored]
            n["runs"] += int(scored.sum())
            n["ctc"] += int((c == t).sum())
            n["head"] += int((p == t).sum())
            n["head_tau"] += int((sure[scored] == t).sum())
            n["changed"] += int((p != c).sum())
            n["fixed"] += int(((p == t) & (c != t)).sum())
            n["broken"] += int(((p != t) & (c == t)).sum())
            lp = logp[scored]
            ci = c.clamp_max(lp.size(1) - 1).unsqueeze(1)
            other, best_other = lp.scatter(1, ci, float("-inf")).max(1)
            margins.append(lp.gather(1, ci).squeeze(1) - other)
            ctc_right.append(c == t)
            other_right.append(best_other == t)
    if n["runs"] == 0:
        raise SystemExit(f"{args.data}: no masked runs at threshold {args.threshold} ({n['utts']} utterances)")
    runs = n["runs"]
    print(f"{args.model} on {args.data}, threshold {args.threshold}: {runs} masked runs in {n['utts']} utterances "
          f"({len(skipped)} skipped)")
    print(f"  exact length: CTC count {n['ctc'] / runs:.1%} ({n['ctc']}), length head {n['head'] / runs:.1%} "
          f"({n['head']}), head where >= {args.length_threshold} sure {n['head_tau'] / runs:.1%} ({n['head_tau']})")
    print(f"  the head changes {n['changed']} runs: fixes {n['fixed']}, breaks {n['broken']}")
    m, right, alt = torch.cat(margins), torch.cat(ctc_right), torch.cat(other_right)
    for tau in MARGINS:
        change = m < tau
        print(f"  margin < {tau:g}: changes {int(change.sum())} runs, fixes {int((change & ~right & alt).sum())}, "
              f"breaks {int((change & right).sum())}")
    if right.all() or not right.any():
        print("  margin AUC: undefined (CTC's count is right for all runs or for none)")
    else:
        wrong_m, right_m = m[~right], m[right]
        # P(a wrong run's margin < a right run's), ties half: the Mann-Whitney statistic
        below, tied = wrong_m[:, None] < right_m[None, :], wrong_m[:, None] == right_m[None, :]
        auc = below.double().mean() + 0.5 * tied.double().mean()
        print(f"  margin AUC (wrong CTC counts below right ones): {float(auc):.3f} ({int((~right).sum())} wrong runs)")


if __name__ == "__main__":
    main()
