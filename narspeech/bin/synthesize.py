"""``narspeech synthesize --model TTS.pt --text "..." --output out.wav`` or ``--text-file LINES --output-dir DIR``.

``--text-file`` holds ``<id> <sentence>`` lines; each becomes ``<output-dir>/<id>.wav`` (written atomically: a wav
is either whole or absent). An empty or unpronounceable line, or a bad id, gives an error naming it and the other
lines are still synthesised. Long input is split at sentence ends. ``--speed 1.5`` speaks 1.5x faster,
``--pitch-shift 2`` two semitones higher, ``--energy-scale 0.8`` softer (FastSpeech 2's variance controls).
Without ``--vocoder`` the mel is vocoded by Griffin-Lim.

Exit status: 0 every line synthesised; 1 some lines failed, or there were none; 2 nothing could start (bad
arguments, model file, or output path).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from narspeech.bin.common import add_quiet_arg, apply_quiet, os_reason, unwritable_dir

PROG = "narspeech synthesize"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # ids become file names: no slashes, no leading dot


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="TTS model file (exp/<name>/model.pt)")
    p.add_argument("--text", help="one text to synthesise (with --output)")
    p.add_argument("--output", help="the wav of --text")
    p.add_argument("--text-file", help="'<id> <sentence>' lines (with --output-dir)")
    p.add_argument("--output-dir", help="where <id>.wav of each --text-file line goes")
    p.add_argument("--speed", type=float, default=1.0, help="speaking rate (2.0 = twice as fast)")
    p.add_argument("--pitch-shift", type=float, default=0.0, help="semitones added to the pitch")
    p.add_argument("--pitch-scale", type=float, default=1.0, help="scales pitch excursions (0 = monotone)")
    p.add_argument("--energy-scale", type=float, default=1.0, help="multiplies the frame energy")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    add_quiet_arg(p)
    return p


def _read_lines(path: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(``[(id, text)]``, ``[(line name, why)]``) of a text file; bad lines are named, not fatal."""
    items, problems, seen = [], [], set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, _, text = line.strip().partition(" ")
            where = f"{path}:{n} ({key})"
            if not _SAFE_ID.match(key):
                problems.append((where, "the id must be letters, digits, '_', '-' or '.' (it names the wav)"))
            elif key in seen:
                problems.append((where, "duplicate id"))
            elif not text.strip():
                problems.append((where, "no text after the id"))
            else:
                seen.add(key)
                items.append((key, text.strip()))
    return items, problems


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    apply_quiet(args)
    single = args.text is not None
    if single == bool(args.text_file) or (single and not args.output) or (args.text_file and not args.output_dir):
        print(f"{PROG}: give --text with --output, or --text-file with --output-dir", file=sys.stderr)
        return 2
    if args.speed <= 0 or args.batch_size < 1:
        print(f"{PROG}: --speed must be > 0 and --batch-size >= 1", file=sys.stderr)
        return 2
    import torch

    from narspeech.audio.io import save_wav
    from narspeech.progress import progress
    from narspeech.train.checkpoint import CheckpointError
    from narspeech.tts.synthesize import TTS, check_text, synthesize

    if args.threads:
        torch.set_num_threads(args.threads)
    # 1. inputs and destination first: a mistake there costs no model loading
    if single:
        items, problems = [("text", args.text)], []
        targets = {"text": Path(args.output)}
        out_dir = Path(args.output).parent
    else:
        try:
            items, problems = _read_lines(args.text_file)
        except OSError as e:
            print(f"{PROG}: cannot read --text-file {args.text_file}: {os_reason(e)}", file=sys.stderr)
            return 2
        out_dir = Path(args.output_dir)
        targets = {k: out_dir / f"{k}.wav" for k, _ in items}
    why = unwritable_dir(out_dir) if out_dir != Path("") else None
    if why:
        print(f"{PROG}: cannot write to {out_dir}: {why}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    # 2. the model
    try:
        tts = TTS.load(args.model, args.device)
    except CheckpointError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    # 3. every line checked and named, the good ones synthesised
    total = len(items) + len(problems)  # the readable lines and those _read_lines already refused
    good = []
    for key, text in items:
        reason = check_text(text, tts)
        if reason:
            problems.append((key, reason))
        else:
            good.append((key, text))
    for key, reason in problems:
        print(f"{PROG}: ERROR {key}: {reason}", file=sys.stderr)
    done = 0
    for start in progress(range(0, len(good), args.batch_size), desc="synthesize", unit="batch"):
        chunk = good[start : start + args.batch_size]
        results = synthesize([t for _, t in chunk], tts, speed=args.speed, pitch_shift=args.pitch_shift,
                             pitch_scale=args.pitch_scale, energy_scale=args.energy_scale, batch_size=args.batch_size)
        for (key, _), r in zip(chunk, results):
            save_wav(targets[key], r["wave"], r["sample_rate"])
            done += 1
    if total == 0:
        print(f"{PROG}: warning: no lines in {args.text_file}: nothing synthesised", file=sys.stderr)
        return 1
    if problems:
        print(f"{PROG}: {len(problems)} of {total} inputs failed; {done} synthesised", file=sys.stderr)
    return 1 if problems else 0
