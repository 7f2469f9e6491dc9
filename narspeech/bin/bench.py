"""``narspeech bench asr --model M.pt[:modes] [M2.pt ...] --data DIR --out-dir OUT [--threads 1]``

Modes: ``greedy``, ``beam<N>``, ``refine<K>[@<threshold>][+lp<length threshold>][+ls<length steps>][+dt<deletion
threshold>]``; e.g.
``exp/ctc/model.pt:greedy,beam10 exp/mask_ctc/model.pt:refine1,refine10 exp/ar/model.pt:beam1,beam10``.
Without modes each model gets its family's defaults (see narspeech.bench.asr).
"""

from __future__ import annotations

import argparse

from narspeech.bin.common import add_quiet_arg, apply_quiet


def get_parser() -> argparse.ArgumentParser:
    from narspeech.asr.base import ASRDecodeOptions

    d = ASRDecodeOptions()
    p = argparse.ArgumentParser(prog="narspeech bench", description="evaluation protocol: quality + latency")
    sub = p.add_subparsers(dest="task", required=True)
    a = sub.add_parser("asr", help="WER/CER and latency of ASR models and decoding modes", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--model", nargs="+", required=True, help="model files, each optionally ':mode,mode,...'")
    a.add_argument("--data", required=True, help="Kaldi data dir with references")
    a.add_argument("--out-dir", required=True, help="writes results.json, results.md, tradeoff.png")
    a.add_argument("--methods", default="", help="comma-separated modes for models given without ':modes' "
                                                 "(default: each family's modes)")
    a.add_argument("--beam-size", type=int, default=d.beam_size, help="width of a bare 'beam' mode")
    a.add_argument("--iterations", type=int, default=d.iterations, help="passes of a bare 'refine' mode")
    a.add_argument("--threshold", type=float, default=d.threshold, help="Mask-CTC masking threshold")
    a.add_argument("--length-threshold", type=float, default=d.length_threshold,
                   help="Improved Mask-CTC: least length-head probability to change a span's length")
    a.add_argument("--length-steps", type=int, default=d.length_steps,
                   help="Improved Mask-CTC: iterations that predict lengths (0 = all)")
    a.add_argument("--deletion-threshold", type=float, default=d.deletion_threshold,
                   help="Mask-CTC with mlm_deletion: least 'no token' probability to delete a mask (0: argmax)")
    a.add_argument("--ctc-weight", type=float, default=d.ctc_weight, help="AR beam: CTC prefix score weight")
    a.add_argument("--length-bonus", type=float, default=d.length_bonus, help="AR beam: score per token")
    a.add_argument("--ar-ref", default=None, help="system name of the AR reference row (default: widest AR beam)")
    a.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned, reported)")
    a.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput measurement")
    a.add_argument("--max-utts", type=int, default=0, help="use the first N utterances (0 = all)")
    a.add_argument("--repeats", type=int, default=3, help="batch-1 timings per utterance; the fastest is kept")
    a.add_argument("--no-gpu", action="store_true", help="CPU rows only even when CUDA is available")
    add_quiet_arg(a)
    t = sub.add_parser("tts", help="MCD, F0 RMSE, ASR round-trip CER and latency of TTS models",
                       description="narspeech bench tts --model A.pt [B.pt ...] --data DIR --out-dir OUT "
                       "[--asr-model ASR.pt]: see narspeech.bench.tts")
    t.add_argument("--model", nargs="+", required=True, help="TTS model files")
    t.add_argument("--data", required=True, help="Kaldi data dir: the sentences (text) and their recordings")
    t.add_argument("--out-dir", required=True, help="writes results.json, results.md, tradeoff.png, wav/, samples")
    t.add_argument("--asr-model", default=None, help="a narspeech ASR model as the second round-trip judge")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned, reported)")
    t.add_argument("--batch-size", type=int, default=16, help="batch size of the throughput measurement")
    t.add_argument("--max-utts", type=int, default=0, help="use the first N sentences (0 = all)")
    t.add_argument("--repeats", type=int, default=3, help="batch-1 timings per sentence; the fastest is kept")
    t.add_argument("--rtf-utts", type=int, default=10, help="sentences of the end-to-end real-time factor")
    t.add_argument("--no-gpu", action="store_true", help="CPU rows only even when CUDA is available")
    add_quiet_arg(t)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    if args.task == "tts":
        from narspeech.bench.tts import bench_tts

        bench_tts(args.model, args.data, args.out_dir, args.asr_model, args.threads, args.batch_size, args.max_utts,
                  args.repeats, args.rtf_utts, gpu=not args.no_gpu)
        print(f"wrote {args.out_dir}/results.md, results.json, tradeoff.png")
        return 0
    from narspeech.asr.base import ASRDecodeOptions
    from narspeech.bench.asr import bench_asr

    base = ASRDecodeOptions(threshold=args.threshold, length_threshold=args.length_threshold, ctc_weight=args.ctc_weight,
                            length_bonus=args.length_bonus, iterations=args.iterations, length_steps=args.length_steps,
                            deletion_threshold=args.deletion_threshold)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] or None
    bench_asr(args.model, args.data, args.out_dir, methods, args.threads, args.batch_size, args.max_utts, args.beam_size,
              gpu=not args.no_gpu, repeats=args.repeats, base_opts=base, ar_ref=args.ar_ref)
    print(f"wrote {args.out_dir}/results.md, results.json, tradeoff.png")
    return 0
