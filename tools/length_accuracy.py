#!/usr/bin/env python3
"""How well an Improved Mask-CTC length head counts the tokens of the masked spans of decoding's first step.

For each utterance of a data dir with references: CTC greedy, its tokens below ``--threshold`` masked, each run of
masks merged (as the first length step of ``refine`` does), and each run's true length taken from the
edit-distance alignment of the CTC output to the reference (``narspeech.nat.length.hypothesis_length_targets``).
Prints, over the runs, how often CTC's count is right, how often the length head is (always followed, and only
where it is at least ``--length-threshold`` sure), and how many of the head's changes fix or break a run.
Usage: tools/length_accuracy.py MODEL.pt DATA_DIR [--threshold 0.999] [--length-threshold 0.9]
"""
import argparse

import torch

from narspeech.asr.transcribe import ctc_outputs
from narspeech.data.kaldi import read_data_dir
from narspeech.nat.ctc import ctc_tokens_with_frames, token_spans
from narspeech.nat.length import IGNORE, hypothesis_length_targets, merge_mask_runs, merge_spans, neighbour_spans
from narspeech.train.checkpoint import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--threshold", type=float, default=0.999, help="mask CTC tokens below this probability")
    ap.add_argument("--length-threshold", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = load_model(args.model)
    model.eval()
    if getattr(model, "length_head", None) is None:
        raise SystemExit(f"{args.model}: not an Improved Mask-CTC model (no length head)")
    n = {"runs": 0, "ctc": 0, "head": 0, "head_tau": 0, "changed": 0, "fixed": 0, "broken": 0, "utts": 0}
    skipped: list[str] = []
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
            prob, pred = model._length_logits(states, spans, cum).softmax(-1).max(-1)
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
    if n["runs"] == 0:
        raise SystemExit(f"{args.data}: no masked runs at threshold {args.threshold} ({n['utts']} utterances)")
    runs = n["runs"]
    print(f"{args.model} on {args.data}, threshold {args.threshold}: {runs} masked runs in {n['utts']} utterances "
          f"({len(skipped)} skipped)")
    print(f"  exact length: CTC count {n['ctc'] / runs:.1%} ({n['ctc']}), length head {n['head'] / runs:.1%} "
          f"({n['head']}), head where >= {args.length_threshold} sure {n['head_tau'] / runs:.1%} ({n['head_tau']})")
    print(f"  the head changes {n['changed']} runs: fixes {n['fixed']}, breaks {n['broken']}")


if __name__ == "__main__":
    main()
