"""``narspeech decode --model MODEL.pt --data DIR [DIR...] --out-dir OUT``: writes ``OUT/<set>/text`` (+ scores).

Each data dir is decoded to ``<out-dir>/<basename>/hyp.text``; when it has references, ``score.txt`` (WER/CER) too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from narspeech.bin.common import add_decode_args, decode_options, unsupported_method


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech decode", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    add_decode_args(p)
    p.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir, write_kv
    from narspeech.metrics import char_error_rate, word_error_rate
    from narspeech.train.checkpoint import load_model

    model, tok, _ = load_model(args.model, args.device)
    opts = decode_options(args)
    err = unsupported_method(model, opts, "narspeech decode")
    if err:
        print(err, file=sys.stderr)
        return 2
    failed_total = 0
    for d in args.data:
        utts = read_data_dir(d, require_text=False)
        out = Path(args.out_dir) / Path(d).name
        out.mkdir(parents=True, exist_ok=True)
        hyps: dict[str, str] = {}
        for t in transcribe_utterances(model, tok, utts, args.batch_size, opts):
            if t.error is not None:
                print(f"narspeech decode: skipped {t.key}: {t.error}", file=sys.stderr)
                failed_total += 1
            else:
                hyps[t.key] = t.text or ""
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
    return 1 if failed_total else 0
