"""``narspeech transcribe --model MODEL.pt [--batch-size N] FILE...`` or ``--wav-scp SCP --output TEXT``.

Prints/writes one ``<key> <text>`` line per input (Kaldi ``text``; the key is the file stem or the scp id).
An unreadable file gives an error line on stderr naming it; the others are still transcribed; exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from narspeech.bin.common import add_decode_args, decode_options, unsupported_method


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech transcribe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model file (exp/<name>/model.pt)")
    p.add_argument("files", nargs="*", help="audio files (wav, flac, ogg, ...)")
    p.add_argument("--wav-scp", help="Kaldi wav.scp of '<id> <path>' lines instead of FILE arguments")
    p.add_argument("--output", help="write the transcripts here (Kaldi text) instead of stdout")
    p.add_argument("--batch-size", type=int, default=1)
    add_decode_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import DataDirError, Utterance, read_kv
    from narspeech.train.checkpoint import CheckpointError, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if bool(args.files) == bool(args.wav_scp):
        print("narspeech transcribe: give audio FILEs or --wav-scp (not both)", file=sys.stderr)
        return 2
    try:
        model, tok, _ = load_model(args.model, args.device)
    except CheckpointError as e:
        print(f"narspeech transcribe: {e}", file=sys.stderr)
        return 2
    if args.wav_scp:
        try:
            utts = [Utterance(k, v, None, k) for k, v in read_kv(args.wav_scp).items()]
        except (DataDirError, OSError) as e:
            print(f"narspeech transcribe: {e}", file=sys.stderr)
            return 2
    else:
        utts = [Utterance(Path(f).stem, f, None, Path(f).stem) for f in args.files]
    opts = decode_options(args)
    err = unsupported_method(model, opts, "narspeech transcribe")
    if err:
        print(err, file=sys.stderr)
        return 2
    out = sys.stdout
    tmp = None
    if args.output:
        tmp = args.output + ".tmp"
        out = open(tmp, "w", encoding="utf-8")
    failed = 0
    try:
        for t in transcribe_utterances(model, tok, utts, args.batch_size, opts):
            if t.error is not None:
                failed += 1
                print(f"narspeech transcribe: ERROR {t.key}: {t.error}", file=sys.stderr)
                continue
            out.write(f"{t.key} {t.text}\n")
            out.flush()
    finally:
        if tmp is not None:
            out.close()
            os.replace(tmp, args.output)
    if failed:
        print(f"narspeech transcribe: {failed} of {len(utts)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
