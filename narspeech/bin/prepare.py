"""``narspeech prepare <corpus> ...``: corpus preparation into Kaldi data directories."""

from __future__ import annotations

import importlib
import sys

CORPORA = {
    "mini": "generated multi-voice English sentences (espeak-ng), the offline demo corpus",
    "fsdd": "connected-digit utterances built from the Free Spoken Digit Dataset",
    "yesno": "the Kaldi yes/no corpus (OpenSLR 1)",
    "ljsynth": "sentence-level multi-voice corpus: LJ Speech transcripts spoken by espeak-ng voices",
    "librispeech": "LibriSpeech (OpenSLR 12): download and/or convert the corpus layout to Kaldi data dirs",
    "an4": "CMU AN4: real read speech, 74 training / 10 test speakers, dev = whole training speakers",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: narspeech prepare <corpus> [options]\n\ncorpora:")
        for k, v in CORPORA.items():
            print(f"  {k:<11} {v}")
        return 0
    if argv[0] not in CORPORA:
        print(f"narspeech prepare: unknown corpus {argv[0]!r}; valid: {', '.join(CORPORA)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"narspeech.recipes.{argv[0]}").main(argv[1:]) or 0)
