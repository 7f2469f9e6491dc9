"""``narspeech validate DIR [DIR...]``: check Kaldi data dirs like validate_data_dir.sh (speech dirs: wav.scp, text,
utt2spk, segments; text-to-text dirs: text with text.src / text.hyp[.N]; dump dirs: feats.scp, pitch.scp, ...
-> .npy); exit 1 on problems."""

from __future__ import annotations

import argparse
import sys


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech validate", description=__doc__)
    p.add_argument("dirs", nargs="+")
    p.add_argument("--no-audio", action="store_true", help="skip opening the audio files")
    p.add_argument("--no-text", action="store_true", help="a text file is not required")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from narspeech.data.dump import is_dump_dir, validate_dump_dir
    from narspeech.data.kaldi import validate_data_dir
    from narspeech.data.text import is_text_dir, validate_text_dir

    bad = 0
    for d in args.dirs:
        if is_text_dir(d):
            problems = validate_text_dir(d)
        elif is_dump_dir(d):
            problems = validate_dump_dir(d)
        else:
            problems = validate_data_dir(d, check_audio=not args.no_audio, require_text=not args.no_text)
        for p in problems:
            print(p, file=sys.stderr)
        bad += bool(problems)
        if not problems:
            print(f"{d}: OK")
    return 1 if bad else 0
