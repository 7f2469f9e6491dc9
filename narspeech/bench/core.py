"""What every family's benchmark needs, whatever it measures: pinned threads, the devices to time on, CUDA-synchronised
timing (fastest of several repeats, as timeit), percentiles, batch-1 vs full-batch throughput, speed-up against a
reference row, the result writers (JSON with the run's metadata, a Markdown table) and the quality-latency figure. A family's bench module
(``bench/asr.py``, ...) decides what a row holds and how one item is run."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def setup(threads: int, gpu: bool = True) -> list[torch.device]:
    """Pin torch's CPU threads (the figure every latency row reports) and return the devices to time on: the CPU,
    and the GPU when one is present and wanted."""
    torch.set_num_threads(threads)
    return [torch.device("cpu")] + ([torch.device("cuda")] if gpu and torch.cuda.is_available() else [])


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; a timer must not stop before them)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``(fn(), milliseconds)``, synchronised on ``device`` before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, 1000 * (time.perf_counter() - t0)


def fastest(fn: Callable[[], T], device: torch.device, repeats: int) -> tuple[T, float]:
    """The first run's output and the fastest of ``repeats`` runs in ms: bursts of load on a shared machine drop out."""
    runs = [timed(fn, device) for _ in range(max(1, repeats))]
    return runs[0][0], min(ms for _, ms in runs)


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def throughput(run_batch: Callable[[Sequence[int]], Any], order: Sequence[int], batch_size: int,
               device: torch.device) -> float:
    """Items per second when ``order`` (item indices, e.g. sorted by length) is run in batches of ``batch_size``."""
    sync(device)
    t0 = time.perf_counter()
    for s in range(0, len(order), batch_size):
        run_batch(order[s : s + batch_size])
    sync(device)
    return len(order) / max(1e-9, time.perf_counter() - t0)


def speedups(latencies: Sequence[float], reference: int | None) -> list[float | None]:
    """Each latency's speed-up against the row ``reference`` (None when there is no reference row)."""
    if reference is None:
        return [None] * len(latencies)
    return [latencies[reference] / max(1e-12, lat) for lat in latencies]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def run_meta(threads: int, repeats: int, devices: Sequence[torch.device], **extra: Any) -> dict:
    """What a results file must say about the run: threads, repeats, torch, the CPU and GPU."""
    return {"threads": threads, "repeats": repeats, "torch": torch.__version__, "cpu": cpu_name(),
            "gpu": torch.cuda.get_device_name() if any(d.type == "cuda" for d in devices) else None, **extra}


def write_results(out_dir: str | Path, meta: dict, rows: Sequence[dict], table: str, preamble: str) -> Path:
    """``results.json`` (meta + rows) and ``results.md`` (the preamble, then the table) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=1))
    (out / "results.md").write_text(f"{preamble}\n\n{table}\n")
    return out


# Up to this many points the trade-off panel labels every one; beyond, the labels overlap and only the legend names them.
MAX_ANNOTATED_ROWS = 8
# One marker per model file (the system name's first word), so that two systems sharing a colour differ in shape.
MARKERS = ("o", "^", "v", "D", "P", "X", "*", "<", ">", "h")


@dataclass
class TradeoffPoint:
    """One row of a bench in the quality-latency figure."""

    label: str  # legend text, e.g. "mask_ctc refine5 (cpu)"
    system: str  # "<model file> <mode>": the first word picks the marker, the system the colour
    latency_ms: float  # per item, batch 1
    quality: float  # the family's measure (WER, MCD, BLEU, ...)
    reference: bool = False  # the AR counterpart: drawn as squares


def plot_styles(systems: Sequence[str], reference: set[str]) -> dict[str, tuple[int, str]]:
    """Per system: (colour index into a 20-colour palette, marker). Colours cycle over the systems in order; the
    marker is that of the model file (first word of the system name), squares for the reference (AR) rows, so
    (colour, marker) pairs stay distinct for up to 20 x len(MARKERS) systems of distinct model files."""
    models = list(dict.fromkeys(s.split()[0] for s in systems if s not in reference))
    styles = {}
    for i, name in enumerate(dict.fromkeys(systems)):
        marker = "s" if name in reference else MARKERS[models.index(name.split()[0]) % len(MARKERS)]
        styles[name] = (i % 20, marker)
    return styles


def plot_tradeoff(points: Sequence[TradeoffPoint], quality_label: str, out: str | Path,
                  lengths: dict[str, list[tuple[int, float]]] | None = None,
                  length_label: str = "output length") -> None:
    """``tradeoff.png``: quality against batch-1 latency (log scale when the latencies span 10x: AR decoding is often
    10-100x slower), and, given ``lengths`` (system -> (output length, latency ms) per item), latency against
    output length; the same colour and marker per system in both panels and one legend outside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = lengths or {}
    fig, axes = plt.subplots(1, 2 if lengths else 1, figsize=(11 if lengths else 6, 4.2), squeeze=False)
    a = axes[0][0]
    styles = plot_styles([p.system for p in points] + list(lengths), {p.system for p in points if p.reference})
    palette = plt.get_cmap("tab20")
    annotate = len(points) <= MAX_ANNOTATED_ROWS
    for p in points:
        c, m = styles[p.system]
        a.scatter(p.latency_ms, p.quality, s=40, marker=m, color=palette(c), label=p.label)
        if annotate:
            a.annotate(p.label, (p.latency_ms, p.quality), fontsize=8, xytext=(4, 4), textcoords="offset points")
    a.margins(x=0.25 if annotate else 0.1, y=0.2)  # room for the labels
    lat = [p.latency_ms for p in points]
    if lat and min(lat) > 0 and max(lat) > 10 * min(lat):
        a.set_xscale("log")
    a.set_xlabel("latency per item, batch 1 (ms)")
    a.set_ylabel(quality_label)
    a.set_title("quality vs latency")
    a.grid(alpha=0.3)
    if lengths:
        b = axes[0][1]
        for name, pts in lengths.items():
            if pts:
                xs, ys = zip(*pts)
                c, m = styles[name]
                b.scatter(xs, ys, s=8, marker=m, alpha=0.6, color=palette(c))
        b.set_xlabel(length_label)
        b.set_ylabel("latency, batch 1 (ms)")
        b.set_title("decode latency vs output length")
        b.grid(alpha=0.3)
    fig.tight_layout()
    fig.legend(*a.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               ncol=1 + len(points) // 26)
    fig.savefig(out, dpi=120, bbox_inches="tight")  # "tight" widens the canvas to the legend
    plt.close(fig)
