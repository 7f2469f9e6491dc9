"""ASR evaluation protocol: quality (WER/CER) and latency (CPU batch 1, full batch, GPU when present) per model and
decoding mode, in one process on the same inputs. Writes ``results.json``, ``results.md`` and ``tradeoff.png``.

Latency at batch 1 covers fbank + model + text (audio file reading excluded: it is the same for every system).
Encoder-only time (fbank + encoder) is the floor of CTC decoding: whatever a decoder adds on top shows against it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from narspeech.asr.base import ASRDecodeOptions
from narspeech.audio.features import fbank
from narspeech.audio.io import load_audio
from narspeech.data.kaldi import read_data_dir
from narspeech.metrics import char_error_rate, word_error_rate


@dataclass(frozen=True)
class BenchRow:
    system: str  # model name / decoding mode
    device: str
    threads: int
    wer: float  # %
    cer: float  # %
    params_m: float
    lat_mean_ms: float  # batch 1, per utterance
    lat_p50_ms: float
    lat_p90_ms: float
    rtf: float  # batch-1 compute time / audio duration
    enc_mean_ms: float  # fbank + encoder only, batch 1
    throughput_utt_s: float  # full batch
    batch_size: int
    num_utts: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def bench_model(
    name: str, model, tok, wavs: list[torch.Tensor], refs: list[str], opts: ASRDecodeOptions,
    device: torch.device, batch_size: int, sample_rate: int, threads: int, warmup: int = 3, repeats: int = 3,
) -> tuple[BenchRow, list[tuple[int, float]]]:
    """One row of the table, plus (output length, batch-1 latency ms) pairs for the length figure."""
    model = model.to(device).eval()
    dur = sum(w.numel() for w in wavs) / sample_rate

    def run1(w: torch.Tensor) -> tuple[list[int], str]:
        f = fbank(w.to(device), sample_rate).unsqueeze(0)
        ids = model.infer(f, torch.tensor([f.size(1)], device=device), opts)[0]
        return ids, tok.decode(ids)

    def enc1(w: torch.Tensor) -> None:
        f = fbank(w.to(device), sample_rate).unsqueeze(0)
        model.encode(f, torch.tensor([f.size(1)], device=device))

    def timed(fn, w: torch.Tensor):
        _sync(device)
        t0 = time.perf_counter()
        out = fn(w)
        _sync(device)
        return out, 1000 * (time.perf_counter() - t0)

    with torch.inference_mode():
        for w in wavs[:warmup]:
            run1(w)
            enc1(w)
        hyps, lats, lens, enc = [], [], [], []
        # full decode and encoder-only alternate per utterance, so machine noise hits both alike; each is repeated
        # `repeats` times and the fastest kept (as timeit does): bursts of load on a shared machine then drop out
        for w in wavs:
            runs = [timed(run1, w) for _ in range(repeats)]
            (ids, text), _ = runs[0]
            lats.append(min(ms for _, ms in runs))
            hyps.append(text)
            lens.append(len(ids))
            enc.append(min(timed(enc1, w)[1] for _ in range(repeats)))
        order = sorted(range(len(wavs)), key=lambda i: wavs[i].numel())
        _sync(device)
        t0 = time.perf_counter()
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            feats = [fbank(wavs[i].to(device), sample_rate) for i in idx]
            x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
            model.infer(x, torch.tensor([f.size(0) for f in feats], device=device), opts)
        _sync(device)
        full = time.perf_counter() - t0
    row = BenchRow(
        system=name, device=device.type, threads=threads,
        wer=100 * word_error_rate(refs, hyps).rate, cer=100 * char_error_rate(refs, hyps).rate,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        lat_mean_ms=statistics.mean(lats), lat_p50_ms=_pct(lats, 0.5), lat_p90_ms=_pct(lats, 0.9),
        rtf=sum(lats) / 1000 / dur, enc_mean_ms=statistics.mean(enc),
        throughput_utt_s=len(wavs) / full, batch_size=batch_size, num_utts=len(wavs),
    )
    return row, list(zip(lens, lats))


def markdown_table(rows: Sequence[BenchRow]) -> str:
    head = ("| system | device | thr | WER % | CER % | params (M) | lat mean ms | p50 | p90 | RTF | enc-only ms "
            "| dec/enc | utt/s (batch) |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r.system} | {r.device} | {r.threads} | {r.wer:.2f} | {r.cer:.2f} | {r.params_m:.2f} | "
            f"{r.lat_mean_ms:.1f} | {r.lat_p50_ms:.1f} | {r.lat_p90_ms:.1f} | {r.rtf:.4f} | {r.enc_mean_ms:.1f} | "
            f"{r.lat_mean_ms / max(1e-9, r.enc_mean_ms):.2f} | {r.throughput_utt_s:.1f} (b={r.batch_size}) |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[BenchRow], lengths: dict[str, list[tuple[int, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        a.scatter(r.lat_mean_ms, r.wer, s=40)
        a.annotate(f"{r.system} ({r.device})", (r.lat_mean_ms, r.wer), fontsize=8, xytext=(4, 4), textcoords="offset points")
    a.margins(x=0.25, y=0.2)  # room for the labels
    a.set_xlabel("latency per utterance, batch 1 (ms)")
    a.set_ylabel("WER (%)")
    a.set_title("quality vs latency")
    a.grid(alpha=0.3)
    for name, pts in lengths.items():
        if pts:
            xs, ys = zip(*pts)
            b.scatter(xs, ys, s=8, label=name, alpha=0.6)
    b.set_xlabel("output length (tokens)")
    b.set_ylabel("latency, batch 1 (ms)")
    b.set_title("decode latency vs output length")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def bench_asr(
    models: Sequence[str], data_dir: str, out_dir: str, methods: Sequence[str] = ("greedy",),
    threads: int = 1, batch_size: int = 32, max_utts: int = 0, beam_size: int = 10, gpu: bool = True,
    repeats: int = 3,
) -> list[BenchRow]:
    """Run every (model, method) on ``data_dir``; CPU rows with ``threads`` threads, GPU rows when CUDA exists."""
    from narspeech.train.checkpoint import load_model

    torch.set_num_threads(threads)
    utts = [u for u in read_data_dir(data_dir) if u.text is not None]
    if max_utts:
        utts = utts[:max_utts]
    sr = 16000
    wavs = [load_audio(u.audio, sr, u.segment.start if u.segment else 0.0, u.segment.end if u.segment else -1.0) for u in utts]
    refs = [u.text or "" for u in utts]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if gpu and torch.cuda.is_available() else [])
    rows: list[BenchRow] = []
    lengths: dict[str, list[tuple[int, float]]] = {}
    for mpath in models:
        model, tok, cfg = load_model(mpath)
        mname = Path(mpath).parent.name if Path(mpath).name == "model.pt" else Path(mpath).stem
        for method in methods:
            opts = ASRDecodeOptions(method=method, beam_size=beam_size)
            label = f"{mname} {method}" + (f"{beam_size}" if method == "beam" else "")
            for dev in devices:
                row, pts = bench_model(label, model, tok, wavs, refs, opts, dev, batch_size, sr, threads, repeats=repeats)
                rows.append(row)
                if dev.type == "cpu":
                    lengths[label] = pts
                print(markdown_table([row]).splitlines()[-1], flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"data": str(data_dir), "threads": threads, "repeats": repeats, "torch": torch.__version__,
            "cpu": _cpu_name(), "num_utts": len(utts)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    table = markdown_table(rows)
    (out / "results.md").write_text(f"{len(utts)} utterances of {data_dir}, {threads} CPU thread(s), {meta['cpu']}; batch-1 latency: "
                                      f"fastest of {repeats} runs per utterance\n\n{table}\n")
    plot(rows, lengths, out / "tradeoff.png")
    return rows


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown cpu"
