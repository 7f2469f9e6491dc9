"""Command-line pieces shared by the verbs (decoding options for decode/transcribe)."""

from __future__ import annotations

import argparse

METHODS = ("greedy", "beam", "refine")


def add_decode_args(p: argparse.ArgumentParser) -> None:
    """The ``ASRDecodeOptions`` fields as options (defaults from the dataclass, so they cannot drift)."""
    from narspeech.asr.base import ASRDecodeOptions

    d = ASRDecodeOptions()
    g = p.add_argument_group("decoding")
    g.add_argument("--method", choices=METHODS, default=d.method,
                   help="greedy: CTC best path (AR: attention greedy); beam: CTC prefix / AR beam search; "
                        "refine: Mask-CTC mask-predict or Imputer block decoding")
    g.add_argument("--beam-size", type=int, default=d.beam_size)
    g.add_argument("--iterations", type=int, default=d.iterations, help="refine: Mask-CTC K / Imputer B passes")
    g.add_argument("--threshold", type=float, default=d.threshold, help="Mask-CTC: mask CTC tokens below this probability")
    g.add_argument("--length-threshold", type=float, default=d.length_threshold,
                   help="Improved Mask-CTC: change a masked span's length only at this length-head probability or more")
    g.add_argument("--length-steps", type=int, default=d.length_steps,
                   help="Improved Mask-CTC: predict lengths in the first N iterations only (0: in all, as in the paper)")
    g.add_argument("--deletion-threshold", type=float, default=d.deletion_threshold,
                   help="Mask-CTC with mlm_deletion: delete a mask at this 'no token' probability or more "
                        "(0: where it is the most probable; above 1: never)")
    g.add_argument("--ctc-weight", type=float, default=d.ctc_weight, help="AR beam: weight of the CTC prefix score")
    g.add_argument("--length-bonus", type=float, default=d.length_bonus, help="AR beam: score per emitted token")


def decode_options(args: argparse.Namespace):
    from narspeech.asr.base import ASRDecodeOptions

    return ASRDecodeOptions(method=args.method, beam_size=args.beam_size, iterations=args.iterations,
                            threshold=args.threshold, length_threshold=args.length_threshold, length_steps=args.length_steps,
                            deletion_threshold=args.deletion_threshold, ctc_weight=args.ctc_weight,
                            length_bonus=args.length_bonus)


def unsupported_method(model, opts, prog: str) -> str | None:
    """An error line when ``model`` cannot decode with ``opts.method`` (checked before any file is touched)."""
    methods = getattr(model, "methods", ())
    if opts.method not in methods:
        return f"{prog}: {type(model).__name__} cannot decode with --method {opts.method}; valid: {', '.join(methods)}"
    return None
