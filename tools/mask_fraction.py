#!/usr/bin/env python3
"""How many CTC tokens a Mask-CTC masking threshold selects on a data dir (for choosing ``--threshold``).

A token's confidence is the one Mask-CTC decoding masks by: the highest best-path posterior over its frames.
Usage: tools/mask_fraction.py MODEL.pt DATA_DIR [--thresholds 0.5 0.9 0.999]
"""
import argparse

import torch

from narspeech.asr.transcribe import ctc_outputs
from narspeech.data.kaldi import read_data_dir
from narspeech.nat.ctc import ctc_tokens_with_confidence
from narspeech.asr.task import load_asr_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.9, 0.99, 0.999])
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _, _ = load_asr_model(args.model)
    model.eval()
    if not hasattr(model, "ctc_head"):
        raise SystemExit(f"{args.model}: not a CTC-headed model (no ctc_head)")
    confs: list[torch.Tensor] = []
    skipped: list[str] = []
    with torch.inference_mode():
        for _, _, h_lens, log_probs in ctc_outputs(model, read_data_dir(args.data), skipped):
            _, conf, lens = ctc_tokens_with_confidence(log_probs, h_lens)
            confs.append(conf[0, : int(lens[0])])
    c = torch.cat(confs) if confs else torch.zeros(0)
    if c.numel() == 0:
        raise SystemExit(f"{args.data}: no CTC tokens to count ({len(confs)} utterances read, {len(skipped)} skipped)")
    print(f"{args.model} on {args.data}: {c.numel()} CTC tokens from {len(confs)} utterances ({len(skipped)} skipped), "
          f"median confidence {c.median():.4f}")
    for t in args.thresholds:
        print(f"  threshold {t}: {(c < t).float().mean():.1%} masked")


if __name__ == "__main__":
    main()
