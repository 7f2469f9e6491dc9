"""``narspeech cmvn --data DIR [DIR...] --out cmvn.json``: global mean/std of 80-dim fbank over the training set."""

from __future__ import annotations

import argparse
import json
import sys


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech cmvn", description=__doc__)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--max-utts", type=int, default=0, help="use at most N utterances (0 = all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    import os

    from narspeech.audio.features import CMVNAccumulator, fbank
    from narspeech.audio.io import AudioError, load_audio
    from narspeech.data.kaldi import read_data_dir

    utts = [u for d in args.data for u in read_data_dir(d, require_text=False)]
    if args.max_utts:
        utts = utts[:: max(1, len(utts) // args.max_utts)][: args.max_utts]
    acc = CMVNAccumulator()
    skipped = 0
    for u in utts:
        seg = u.segment
        try:
            acc.add(fbank(load_audio(u.audio, args.sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0), args.sample_rate))
        except AudioError as e:
            print(f"narspeech cmvn: skipping {u.utt_id}: {e}", file=sys.stderr)
            skipped += 1
    mean, std = acc.stats()
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"mean": mean.tolist(), "std": std.tolist(), "frames": acc.count}, f)
    os.replace(tmp, args.out)
    print(f"{args.out}: {acc.count} frames from {len(utts) - skipped} utterances ({skipped} skipped)")
    return 0 if skipped == 0 else 1
