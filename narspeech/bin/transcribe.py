"""``narspeech transcribe --model MODEL.pt [--batch-size N] FILE...`` or ``--wav-scp SCP --output TEXT``.

Prints/writes one ``<key> <text>`` line per input (Kaldi ``text``; the key is the file stem or the scp id).
An input that cannot be used (unreadable, missing, too short or too long, a broken scp line) gives an error line on
stderr naming it; the others are still transcribed. ``--output`` is written whole at the end (its folder is created
and checked before the model loads); after a crash or Ctrl-C the finished lines are kept in ``<output>.partial`` and
an existing ``--output`` is left untouched.

Exit status: 0 every input transcribed; 1 some inputs failed, or there were none; 2 nothing could start (bad
arguments, model file, or output path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from narspeech.bin.common import (OutputFile, add_decode_args, add_quiet_arg, apply_quiet, decode_options, os_reason,
                                  unsupported_method)

PROG = "narspeech transcribe"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model file (exp/<name>/model.pt)")
    p.add_argument("files", nargs="*", help="audio files (wav, flac, ogg, ...)")
    p.add_argument("--wav-scp", help="Kaldi wav.scp of '<id> <path>' lines instead of FILE arguments")
    p.add_argument("--output", help="write the transcripts here (Kaldi text) instead of stdout")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="refuse (by name) inputs longer than this (default: narspeech.asr.transcribe.MAX_SECONDS)")
    add_decode_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    add_quiet_arg(p)
    return p


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _file_utterances(files: list[str]):
    """One utterance per FILE, keyed by its stem (by the path as given where two files share a stem)."""
    from collections import Counter

    from narspeech.data.kaldi import Utterance

    stems = Counter(Path(f).stem for f in files)
    keys = [Path(f).stem if stems[Path(f).stem] == 1 else f for f in files]
    return [Utterance(k, f, None, k) for k, f in zip(keys, files)]


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    if bool(args.files) == bool(args.wav_scp):
        print(f"{PROG}: give audio FILEs or --wav-scp (not both)", file=sys.stderr)
        return 2
    import torch

    from narspeech.asr.transcribe import MAX_SECONDS, transcribe_utterances
    from narspeech.data.kaldi import Utterance, read_scp_lenient
    from narspeech.progress import progress, write
    from narspeech.train.checkpoint import CheckpointError
    from narspeech.asr.task import load_asr_model

    if args.threads:
        torch.set_num_threads(args.threads)
    # 1. inputs and output destination, before the model loads: a mistake there costs no waiting
    problems: list[tuple[str, str]] = []
    if args.wav_scp:
        try:
            entries, problems = read_scp_lenient(args.wav_scp)
        except OSError as e:
            print(f"{PROG}: cannot read --wav-scp {args.wav_scp}: {os_reason(e)}", file=sys.stderr)
            return 2
        utts = [Utterance(k, v, None, k) for k, v in entries]
    else:
        utts = _file_utterances(args.files)
    output = OutputFile(args.output) if args.output else None
    if output is not None:
        try:
            output.open()
        except OSError as e:
            print(f"{PROG}: cannot write --output {args.output}: {os_reason(e)}", file=sys.stderr)
            return 2
    # 2. the model
    try:
        model, tok, _ = load_asr_model(args.model, args.device)
        opts = decode_options(args)
        err = unsupported_method(model, opts, PROG)
    except CheckpointError as e:
        err = f"{PROG}: {e}"
    if err:
        print(err, file=sys.stderr)
        if output is not None:
            output.discard()
        return 2
    # 3. transcribe, each failure named; the output is committed only when every input has been handled
    total = len(utts) + len(problems)
    for key, why in problems:
        print(f"{PROG}: ERROR {key}: {why}", file=sys.stderr)
    failed, done = len(problems), 0
    out = output.file if output is not None else sys.stdout
    max_seconds = MAX_SECONDS if args.max_seconds is None else args.max_seconds
    try:
        results = transcribe_utterances(model, tok, utts, args.batch_size, opts, max_seconds=max_seconds)
        for t in progress(results, total=len(utts), desc="transcribe", unit="file"):
            if t.error is not None:
                failed += 1
                write(f"{PROG}: ERROR {t.key}: {t.error}")
                continue
            out.write(f"{t.key} {t.text}\n")
            out.flush()
            done += 1
    except BaseException as e:
        if output is None:
            raise
        partial = output.keep_partial()
        kept = f"the {done} finished transcripts are in {partial}" if partial else "nothing could be kept"
        print(f"{PROG}: stopped after {done + failed} of {total} inputs ({type(e).__name__}); {kept}; "
              f"{args.output} was not changed", file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            return 130
        raise
    if output is not None:
        output.commit()
    if total == 0:
        print(f"{PROG}: warning: no inputs ({args.wav_scp or 'no files'} is empty): nothing transcribed", file=sys.stderr)
        return 1
    if failed:
        print(f"{PROG}: {failed} of {total} inputs failed", file=sys.stderr)
    return 1 if failed else 0
