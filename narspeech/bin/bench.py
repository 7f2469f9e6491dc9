"""``narspeech bench asr --model M.pt [M2.pt ...] --data DIR --out-dir OUT [--methods greedy,beam] [--threads 1]``"""

from __future__ import annotations

import argparse


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech bench", description="evaluation protocol: quality + latency")
    sub = p.add_subparsers(dest="task", required=True)
    a = sub.add_parser("asr", help="WER/CER and latency of ASR models and decoding modes")
    a.add_argument("--model", nargs="+", required=True, help="model files")
    a.add_argument("--data", required=True, help="Kaldi data dir with references")
    a.add_argument("--out-dir", required=True, help="writes results.json, results.md, tradeoff.png")
    a.add_argument("--methods", default="greedy", help="comma-separated: greedy, beam")
    a.add_argument("--beam-size", type=int, default=10)
    a.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned, reported)")
    a.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput measurement")
    a.add_argument("--max-utts", type=int, default=0, help="use the first N utterances (0 = all)")
    a.add_argument("--repeats", type=int, default=3, help="batch-1 timings per utterance; the fastest is kept")
    a.add_argument("--no-gpu", action="store_true", help="CPU rows only even when CUDA is available")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from narspeech.bench.asr import bench_asr

    bench_asr(args.model, args.data, args.out_dir, [m.strip() for m in args.methods.split(",") if m.strip()],
              args.threads, args.batch_size, args.max_utts, args.beam_size, gpu=not args.no_gpu, repeats=args.repeats)
    print(f"wrote {args.out_dir}/results.md, results.json, tradeoff.png")
    return 0
