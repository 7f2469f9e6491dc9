"""``narspeech score --ref TEXT --hyp TEXT``: WER and CER of Kaldi-format hypotheses against references."""

from __future__ import annotations

import argparse
import json


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech score", description=__doc__)
    p.add_argument("--ref", required=True)
    p.add_argument("--hyp", required=True)
    p.add_argument("--json", help="also write the scores here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from narspeech.data.kaldi import read_kv
    from narspeech.metrics import char_error_rate, word_error_rate

    refs = read_kv(args.ref, allow_empty_value=True)
    hyps = read_kv(args.hyp, allow_empty_value=True)
    keys = sorted(refs)
    missing = [k for k in keys if k not in hyps]
    r = [refs[k] for k in keys]
    h = [hyps.get(k, "") for k in keys]
    wer, cer = word_error_rate(r, h), char_error_rate(r, h)
    print(f"WER {wer}\nCER {cer}\n{len(keys)} utterances, {len(missing)} without hypothesis")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"wer": wer.rate, "cer": cer.rate, "utts": len(keys), "missing": len(missing)}, f, indent=1)
    return 0
