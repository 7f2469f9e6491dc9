"""``narspeech train --config CONF --exp-dir DIR [key.sub=value ...]`` (under torchrun for several GPUs/nodes)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from narspeech.bin.common import add_quiet_arg, apply_quiet


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="narspeech train", description=__doc__)
    p.add_argument("--config", help="YAML experiment config (omitted: the defaults)")
    p.add_argument("--exp-dir", help="output directory (checkpoints, logs, model.pt)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every key, with overrides applied) as YAML and exit")
    p.add_argument("--task", help="with --print-config and no --config: the task whose defaults to print "
                                  "(conf/defaults/<task>.yaml)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if exp-dir/last.pt exists")
    add_quiet_arg(p)
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-3 train.max_epochs=10")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    apply_quiet(args)
    from narspeech.config import ConfigError, load_config, to_dict

    if args.print_config:
        import yaml

        try:
            overrides = ([f"task={args.task}"] if args.task else []) + list(args.overrides)
            print(yaml.safe_dump(to_dict(load_config(args.config, overrides)), sort_keys=False), end="")
        except ConfigError as e:
            print(f"narspeech train: {e}", file=sys.stderr)
            return 2
        return 0
    if not (args.config and args.exp_dir):
        parser.error("--config and --exp-dir are required for training")
    from narspeech.train.distributed import cleanup
    from narspeech.train.trainer import Trainer

    exp = Path(args.exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))  # set by torchrun; other ranks keep their own log file
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(exp / ("train.log" if rank == 0 else f"train.rank{rank}.log"))],
    )
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"narspeech train: {e}", file=sys.stderr)
        return 2
    trainer = Trainer(cfg, exp, resume=not args.no_resume)
    try:
        out = trainer.fit()
    finally:
        cleanup(trainer.dist)
    if out is not None:
        print(out)
    return 0
