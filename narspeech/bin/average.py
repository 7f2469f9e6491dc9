"""``narspeech average --exp-dir DIR [--num N] [--by valid_cer|valid_loss|last] [--out model.pt]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech average", description="average epoch checkpoints into one model file")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--num", type=int, default=5)
    p.add_argument("--by", choices=["valid_cer", "valid_loss", "last"], default="valid_cer")
    p.add_argument("--out", help="default: <exp-dir>/model.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    from narspeech.train.checkpoint import average_state_dicts, epoch_checkpoints, export_model, load_checkpoint

    exp = Path(args.exp_dir)
    files = epoch_checkpoints(exp)
    if not files:
        raise SystemExit(f"narspeech average: no epoch*.pt in {exp}")
    if args.by == "last":
        chosen = files[-args.num :]
    else:
        history = load_checkpoint(exp / "last.pt")["history"] if (exp / "last.pt").exists() else []
        avail = {p.name for p in files}
        scored = [h for h in history if args.by in h and f"epoch{h['epoch']}.pt" in avail]
        if not scored:
            raise SystemExit(f"narspeech average: no {args.by} recorded for the kept checkpoints in {exp}")
        best = sorted(scored, key=lambda h: h[args.by])[: args.num]
        chosen = [exp / f"epoch{h['epoch']}.pt" for h in sorted(best, key=lambda h: h["epoch"])]
    out = Path(args.out) if args.out else exp / "model.pt"
    export_model(load_checkpoint(chosen[-1]), average_state_dicts(chosen), out, averaged=[p.name for p in chosen])
    print(f"{out}: average of {', '.join(p.name for p in chosen)}")
    return 0
