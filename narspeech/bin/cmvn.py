"""``narspeech cmvn --data DIR [DIR...] --out cmvn.json``: global mean/std of 80-dim fbank over the training set.

An utterance whose audio cannot be used is named on stderr and left out; exit status 1 when any was, 2 when none
could be used or the data dirs / output cannot be read / written.
"""

from __future__ import annotations

import argparse
import json
import sys

from narspeech.bin.common import OutputFile, add_quiet_arg, apply_quiet, os_reason

PROG = "narspeech cmvn"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--max-utts", type=int, default=0, help="use at most N utterances (0 = all)")
    add_quiet_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    from narspeech.audio.features import CMVNAccumulator, fbank
    from narspeech.audio.io import AudioError, load_audio
    from narspeech.data.kaldi import DataDirError, read_data_dir
    from narspeech.progress import progress, write

    try:
        utts = [u for d in args.data for u in read_data_dir(d, require_text=False)]
    except (DataDirError, OSError, UnicodeDecodeError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    out = OutputFile(args.out)
    try:
        out.open()
    except OSError as e:
        print(f"{PROG}: cannot write --out {args.out}: {os_reason(e)}", file=sys.stderr)
        return 2
    if args.max_utts:
        utts = utts[:: max(1, len(utts) // args.max_utts)][: args.max_utts]
    acc = CMVNAccumulator()
    skipped = 0
    for u in progress(utts, desc="cmvn", unit="utt"):
        seg = u.segment
        try:
            wav = load_audio(u.audio, args.sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0)
            acc.add(fbank(wav, args.sample_rate))
        except AudioError as e:
            msg = str(e) if str(e).startswith(str(u.audio)) else f"{u.audio}: {e}"
            write(f"{PROG}: skipping {u.utt_id}: {msg}")
            skipped += 1
    if acc.count == 0:
        out.discard()
        print(f"{PROG}: no usable audio in {' '.join(args.data)} ({skipped} utterances skipped): "
              f"{args.out} not written", file=sys.stderr)
        return 2
    mean, std = acc.stats()
    json.dump({"mean": mean.tolist(), "std": std.tolist(), "frames": acc.count}, out.file)
    out.commit()
    print(f"{args.out}: {acc.count} frames from {len(utts) - skipped} utterances ({skipped} skipped)")
    return 0 if skipped == 0 else 1
