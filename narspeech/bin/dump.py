"""``narspeech dump --data DIR [DIR...] --out-dir dump --kind fbank [--kind ...]``: extract features per utterance
into ``<out-dir>/<set>/<kind>/<utt>.npy`` with its scp (``feats.scp`` for fbank, ``<kind>.scp`` otherwise).

Resumable (features already written whole are kept; each is written atomically); audio that cannot be used is named
and skipped. Exit status: 0 all extracted, 1 some skipped, 2 nothing could start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from narspeech.bin.common import add_quiet_arg, apply_quiet, unwritable_dir

PROG = "narspeech dump"


def get_parser() -> argparse.ArgumentParser:
    from narspeech.data.dump import EXTRACTORS

    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs")
    p.add_argument("--out-dir", required=True, help="one folder per data dir is made here (dump/<set>)")
    p.add_argument("--kind", action="append", choices=sorted(EXTRACTORS), required=True, help="feature to extract")
    add_quiet_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    from narspeech.data.dump import dump_features, scp_path
    from narspeech.data.kaldi import read_data_dir
    from narspeech.progress import logs_above_bars, progress, write

    why = unwritable_dir(args.out_dir)
    if why:
        print(f"{PROG}: cannot write --out-dir {args.out_dir}: {why}", file=sys.stderr)
        return 2
    failed = 0
    for d in args.data:
        utts = read_data_dir(d, require_text=False)
        for kind in args.kind:
            with logs_above_bars():
                n, skipped = dump_features(utts, Path(args.out_dir) / Path(d).name, kind, progress)
            for utt, reason in skipped:
                write(f"{PROG}: skipped {utt}: {reason}")
            print(f"{scp_path(Path(args.out_dir) / Path(d).name, kind)}: {n} of {len(utts)} utterances"
                  + (f" ({len(skipped)} skipped)" if skipped else ""))
            failed += len(skipped)
    return 1 if failed else 0
