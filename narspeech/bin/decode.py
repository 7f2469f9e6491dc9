"""``narspeech decode --model MODEL.pt --data DIR [DIR...] --out-dir OUT``: writes ``OUT/<set>/hyp.text`` (+ scores).

Each data dir is decoded to ``<out-dir>/<basename>/hyp.text``; when it has references, ``score.txt`` (WER/CER) too,
counting a skipped utterance as all deletions. An utterance whose audio cannot be used is named on stderr and
skipped; a data dir that cannot be read is named and the other dirs are still decoded.

Exit status: 0 everything decoded; 1 some utterances or data dirs failed; 2 nothing could start (model file,
output folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from narspeech.bin.common import (add_decode_args, add_quiet_arg, apply_quiet, decode_options, os_reason,
                                  unsupported_method, unwritable_dir)

PROG = "narspeech decode"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="skip (by name) utterances longer than this (default: narspeech.asr.transcribe.MAX_SECONDS)")
    add_decode_args(p)
    p.add_argument("--device", default="cpu")
    add_quiet_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    from narspeech.asr.transcribe import MAX_SECONDS, transcribe_utterances
    from narspeech.data.kaldi import DataDirError, read_data_dir, write_kv
    from narspeech.metrics import char_error_rate, word_error_rate
    from narspeech.progress import progress, write
    from narspeech.train.checkpoint import CheckpointError
    from narspeech.asr.task import load_asr_model

    why = unwritable_dir(args.out_dir)
    if why:
        print(f"{PROG}: cannot write --out-dir {args.out_dir}: {why}", file=sys.stderr)
        return 2
    try:
        model, tok, _ = load_asr_model(args.model, args.device)
    except CheckpointError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    opts = decode_options(args)
    err = unsupported_method(model, opts, PROG)
    if err:
        print(err, file=sys.stderr)
        return 2
    max_seconds = MAX_SECONDS if args.max_seconds is None else args.max_seconds
    failed_total = 0
    for d in args.data:
        try:
            utts = read_data_dir(d, require_text=False)
        except (DataDirError, OSError, UnicodeDecodeError) as e:
            print(f"{PROG}: skipped data dir {d}: {e}", file=sys.stderr)
            failed_total += 1
            continue
        if not utts:
            print(f"{PROG}: warning: {d} has no utterances", file=sys.stderr)
        out = Path(args.out_dir) / Path(d).name
        hyps: dict[str, str] = {}
        failed = 0
        results = transcribe_utterances(model, tok, utts, args.batch_size, opts, max_seconds=max_seconds)
        for t in progress(results, total=len(utts), desc=f"decode {Path(d).name}", unit="utt"):
            if t.error is not None:
                write(f"{PROG}: skipped {t.key}: {t.error}")
                failed += 1
            else:
                hyps[t.key] = t.text or ""
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_kv(out / "hyp.text", hyps)
            refs = {u.utt_id: u.text for u in utts if u.text is not None}
            if refs:
                keys = sorted(refs)
                r = [refs[k] for k in keys]
                h = [hyps.get(k, "") for k in keys]  # a skipped utterance counts as all deletions
                wer, cer = word_error_rate(r, h), char_error_rate(r, h)
                line = f"{Path(d).name}: WER {wer}  CER {cer}  ({len(keys)} utts, {len(keys) - len(hyps)} skipped)"
                (out / "score.txt").write_text(line + "\n")
                print(line)
        except OSError as e:
            print(f"{PROG}: cannot write the results of {d} in {out}: {os_reason(e)}", file=sys.stderr)
            return 2
        if failed:
            print(f"{PROG}: {Path(d).name}: {failed} of {len(utts)} utterances failed", file=sys.stderr)
        failed_total += failed
    return 1 if failed_total else 0
