#!/usr/bin/env python3
"""Does the encoder's frame rate leave CTC room for the tokens? Where do its deletions lie?

CTC emits at most one token per encoder frame (and needs a blank between repeated tokens); when the tokens come
almost as fast as the frames, the model drops those it has no frame for. For a model with a CTC head (CTC, SC-CTC,
Mask-CTC, the AR model's CTC branch) and a data dir with references, this prints the reference tokens per encoder
frame (mean and max over utterances), the share of blank frames in the CTC best path, the share of consecutive CTC
tokens with no blank frame between them, and the CTC errors (edit-distance alignment of the best path to the
reference, ``narspeech.nat.length.align_to_references``): substituted, inserted and missing tokens, and of the
missing ones how many lie in a gap without blank frames and how many between two tokens at least ``--threshold``
confident (out of reach of Mask-CTC, which only re-predicts the tokens below its threshold).
Usage: tools/ctc_frames.py MODEL.pt DATA_DIR [--threshold 0.5]
"""
import argparse
import statistics

import torch

from narspeech.asr.transcribe import ctc_outputs
from narspeech.data.kaldi import read_data_dir
from narspeech.nat.ctc import ctc_tokens_with_frames, token_spans
from narspeech.nat.length import IGNORE, align_to_references
from narspeech.asr.task import load_asr_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--threshold", type=float, default=0.5, help="a CTC token this confident is never masked")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = load_asr_model(args.model)
    model.eval()
    if getattr(model, "ctc_head", None) is None:
        raise SystemExit(f"{args.model}: the model has no CTC head")
    rates: list[float] = []
    n = dict(frames=0, blank=0, pairs=0, adjacent=0, ref=0, sub=0, ins=0, miss=0, miss_adjacent=0, miss_confident=0)
    skipped: list[str] = []
    with torch.inference_mode():
        for u, _, h_lens, log_probs in ctc_outputs(model, read_data_dir(args.data), skipped):
            hyp, conf, lens, frame_token = ctc_tokens_with_frames(log_probs, h_lens)
            T, L, ref = int(h_lens[0]), int(lens[0]), tok.encode(u.text)
            rates.append(len(ref) / max(T, 1))
            n["frames"] += T
            n["blank"] += int((frame_token[0, :T] < 0).sum())
            spans = token_spans(frame_token, hyp.size(1))[0, :L]
            # gap g lies before token g (g = L: after the last); its blank frames: end of token g-1 .. start of g
            starts = torch.cat([spans[:, 0], torch.tensor([T])])
            ends = torch.cat([torch.tensor([0]), spans[:, 1]])
            no_blank = starts == ends
            n["pairs"] += max(L - 1, 0)
            n["adjacent"] += int(no_blank[1:L].sum())
            aligned, missing = align_to_references(hyp, lens, [ref])
            aligned, missing = aligned[0, :L], missing[0]
            n["ref"] += len(ref)
            n["ins"] += int((aligned == IGNORE).sum())
            n["sub"] += int(((aligned != IGNORE) & (aligned != hyp[0, :L])).sum())
            n["miss"] += int(missing.sum())
            n["miss_adjacent"] += int(missing[no_blank].sum())
            sure = torch.cat([torch.tensor([True]), conf[0, :L] >= args.threshold, torch.tensor([True])])
            n["miss_confident"] += int(missing[sure[:-1] & sure[1:]].sum())
    if not rates:
        raise SystemExit(f"{args.data}: no readable utterance ({len(skipped)} skipped)")

    def pct(a: str, b: str) -> str:
        return f"{100 * n[a] / max(n[b], 1):.1f} % ({n[a]})"

    print(f"{args.model} on {args.data}: {len(rates)} utterances ({len(skipped)} skipped), {n['frames']} encoder frames")
    print(f"  reference tokens per encoder frame: mean {statistics.mean(rates):.3f}, max {max(rates):.3f}")
    print(f"  blank frames in the CTC best path: {pct('blank', 'frames')}; consecutive CTC tokens with no blank "
          f"between: {pct('adjacent', 'pairs')}")
    print(f"  CTC errors per reference token: substituted {pct('sub', 'ref')}, inserted {pct('ins', 'ref')}, "
          f"missing {pct('miss', 'ref')}")
    print(f"  missing tokens in a gap without blank frames: {pct('miss_adjacent', 'miss')}; between two tokens "
          f">= {args.threshold} sure (or the utterance's edge): {pct('miss_confident', 'miss')}")


if __name__ == "__main__":
    main()
