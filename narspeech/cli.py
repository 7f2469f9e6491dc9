"""``narspeech <verb> ...``: one thin command line over the library.

Each verb lives in ``narspeech/bin/<verb>.py`` with ``get_parser()`` and ``main(argv=None) -> int`` so tests can call
it directly; this file only dispatches.
"""

from __future__ import annotations

import importlib
import sys

# verb -> (module under narspeech.bin, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "prepare a corpus as Kaldi data directories (mini, ljsynth, fsdd, yesno, librispeech, an4)"),
    "validate": ("validate", "check a Kaldi data directory (validate_data_dir.sh-like)"),
    "tokens": ("tokens", "build a char, SentencePiece BPE or phoneme tokenizer from data dirs"),
    "cmvn": ("cmvn", "compute global CMVN statistics of fbank features"),
    "dump": ("dump", "extract features per utterance into dump/<set>/{feats,pitch,...}.scp + .npy files (resumable)"),
    "train": ("train", "train a model from a YAML config (torchrun for several GPUs/nodes)"),
    "average": ("average", "average the last/best N checkpoints into one model file"),
    "decode": ("decode", "decode data directories with a trained model, writing Kaldi text"),
    "score": ("score", "WER/CER of hypotheses against references"),
    "transcribe": ("transcribe", "transcribe audio files (one '<stem> <text>' line per file)"),
    "synthesize": ("synthesize", "synthesize speech from text with a TTS model (a wav per line)"),
    "bench": ("bench", "evaluation protocol: quality + latency tables and figures"),
}


def _usage() -> str:
    lines = ["usage: narspeech <verb> [options]", "", "verbs:"]
    lines += [f"  {v:<11} {h}" for v, (_, h) in VERBS.items()]
    lines += ["", "Run 'narspeech <verb> --help' for the options of a verb."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from narspeech import __version__

        print(__version__)
        return 0
    verb = argv[0]
    if verb not in VERBS:
        print(f"narspeech: unknown verb {verb!r}; valid verbs: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"narspeech.bin.{VERBS[verb][0]}")
    try:
        return int(module.main(argv[1:]) or 0)
    except KeyboardInterrupt:
        print(f"narspeech {verb}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:  # a problem with the user's input, named by its message: no traceback
        print(f"narspeech {verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or folder that is missing, unreadable or unwritable
        from narspeech.bin.common import os_reason

        print(f"narspeech {verb}: error: {os_reason(e)}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message names the input and says what is wrong with it (bugs still show a
    traceback)."""
    from narspeech.audio.io import AudioError
    from narspeech.config import ConfigError
    from narspeech.data.kaldi import DataDirError
    from narspeech.train.checkpoint import CheckpointError

    return AudioError, ConfigError, DataDirError, CheckpointError


if __name__ == "__main__":
    sys.exit(main())
