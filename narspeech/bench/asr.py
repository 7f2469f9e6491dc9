"""ASR evaluation protocol: quality (WER/CER) and latency (CPU batch 1, full batch, GPU when present) per model and
decoding mode, in one process on the same inputs. Writes ``results.json``, ``results.md`` and ``tradeoff.png``
(WER vs batch-1 latency, and batch-1 latency vs output length: AR search grows with the output, NAR should not).

Decoding modes are written ``greedy``, ``beam<N>`` (CTC prefix / AR beam search of width N) and ``refine<K>``
(Mask-CTC with K passes, Imputer block decoding with B=K passes); each model gets its family's modes unless told
(``exp/mask_ctc/model.pt:refine1,refine10``). Every row is also compared with the AR reference row (the widest AR beam
on the same device): ``x AR`` is how many times faster than AR it decodes at batch 1.

Latency at batch 1 covers fbank + model + text (audio file reading excluded: it is the same for every system).
Encoder-only time (fbank + encoder) is the floor of CTC decoding: whatever a decoder adds on top shows against it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from narspeech.asr.base import ASRDecodeOptions
from narspeech.bench import core
from narspeech.audio.features import fbank
from narspeech.audio.features import check_length
from narspeech.audio.io import AudioError, load_audio
from narspeech.data.kaldi import read_data_dir
from narspeech.metrics import char_error_rate, word_error_rate
from narspeech.progress import progress


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
    model: str = ""  # registry name of the model (ctc, mask_ctc, imputer, ar)
    speedup_vs_ar: float | None = None  # AR reference batch-1 latency / this row's (same device, same run)

    @property
    def batch_gain(self) -> float:
        """Full-batch throughput over the batch-1 loop's (1000 / mean latency)."""
        return self.throughput_utt_s * self.lat_mean_ms / 1000


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

    with torch.inference_mode():
        for w in wavs[:warmup]:
            run1(w)
            enc1(w)
        hyps, lats, lens, enc = [], [], [], []
        # full decode and encoder-only alternate per utterance, so machine noise hits both alike; each is repeated
        # `repeats` times and the fastest kept (as timeit does): bursts of load on a shared machine then drop out
        for w in progress(wavs, desc=f"{name} ({device.type})", unit="utt"):
            (ids, text), ms = core.fastest(lambda: run1(w), device, repeats)
            lats.append(ms)
            hyps.append(text)
            lens.append(len(ids))
            enc.append(core.fastest(lambda: enc1(w), device, repeats)[1])

        def run_batch(idx: Sequence[int]) -> None:
            feats = [fbank(wavs[i].to(device), sample_rate) for i in idx]
            x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
            model.infer(x, torch.tensor([f.size(0) for f in feats], device=device), opts)

        order = sorted(range(len(wavs)), key=lambda i: wavs[i].numel())
        utt_per_s = core.throughput(run_batch, order, batch_size, device)
    row = BenchRow(
        system=name, device=device.type, threads=threads,
        wer=100 * word_error_rate(refs, hyps).rate, cer=100 * char_error_rate(refs, hyps).rate,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        lat_mean_ms=statistics.mean(lats), lat_p50_ms=core.percentile(lats, 0.5),
        lat_p90_ms=core.percentile(lats, 0.9), rtf=sum(lats) / 1000 / dur, enc_mean_ms=statistics.mean(enc),
        throughput_utt_s=utt_per_s, batch_size=batch_size, num_utts=len(wavs),
    )
    return row, list(zip(lens, lats))


def markdown_table(rows: Sequence[BenchRow]) -> str:
    head = ("| system | device | thr | WER % | CER % | params (M) | lat mean ms | p50 | p90 | RTF | enc-only ms "
            "| dec/enc | x AR | utt/s (batch) | batch gain |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        sp = "-" if r.speedup_vs_ar is None else f"{r.speedup_vs_ar:.1f}"
        lines.append(
            f"| {r.system} | {r.device} | {r.threads} | {r.wer:.2f} | {r.cer:.2f} | {r.params_m:.2f} | "
            f"{r.lat_mean_ms:.1f} | {r.lat_p50_ms:.1f} | {r.lat_p90_ms:.1f} | {r.rtf:.4f} | {r.enc_mean_ms:.1f} | "
            f"{r.lat_mean_ms / max(1e-9, r.enc_mean_ms):.2f} | {sp} | {r.throughput_utt_s:.1f} (b={r.batch_size}) | "
            f"{r.batch_gain:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[BenchRow], lengths: dict[str, list[tuple[int, float]]], out: Path) -> None:
    """The quality-latency figure of an ASR bench: WER against batch-1 latency, and latency against output length."""
    points = [core.TradeoffPoint(f"{r.system} ({r.device})", r.system, r.lat_mean_ms, r.wer, r.model == "ar")
              for r in rows]
    core.plot_tradeoff(points, "WER (%)", out, lengths=lengths, length_label="output length (tokens)")


# the modes each model family is benchmarked with when the command line names none
DEFAULT_MODES: dict[str, tuple[str, ...]] = {
    "ctc": ("greedy", "beam10"),
    "mask_ctc": ("greedy", "refine1", "refine5", "refine10"),
    "imputer": ("greedy", "refine"),  # bare refine: B = the block size the model was trained with
    "ar": ("beam1", "beam10"),
}


def default_modes(cfg) -> list[str]:
    """The modes a model of config ``cfg`` is benchmarked with when none are named: its family's, and for Improved
    Mask-CTC also K=10 with lengths predicted on CTC's masks only (``+ls1``; egs/*/asr1/RESULTS.md, "third
    redesign")."""
    modes = list(DEFAULT_MODES.get(cfg.model.name, ("greedy",)))
    if cfg.model.name == "mask_ctc" and cfg.model.conf.length_prediction:
        modes.append("refine10+ls1")
    return modes


def parse_mode(mode: str, base: ASRDecodeOptions) -> ASRDecodeOptions:
    """``greedy`` | ``beam<N>`` | ``refine<K>[@<threshold>][+lp<length threshold>][+ls<length steps>][+dt<deletion
    threshold>]`` (a bare ``beam``/``refine`` keeps ``base``'s width/passes; ``@0.9`` sets Mask-CTC's masking
    threshold for this mode, so thresholds tuned per model on a dev set can be compared in one run; ``+lp0.9`` sets
    Improved Mask-CTC's ``length_threshold``, ``+ls1`` its ``length_steps``, ``+dt0.2`` the ``deletion_threshold``
    of a Mask-CTC model with ``mlm_deletion``, ``+dt2`` decodes it without deletions)."""
    valid = "greedy, beam<N>, refine<K>[@<threshold>][+lp<length threshold>][+ls<length steps>][+dt<deletion threshold>]"
    m = re.fullmatch(
        r"(greedy|beam|refine)(\d*)(?:@(\d*\.?\d+))?(?:\+lp(\d*\.?\d+))?(?:\+ls(\d+))?(?:\+dt(\d*\.?\d+))?", mode
    )
    if m is None:
        raise ValueError(f"bad decoding mode {mode!r}; valid: {valid}")
    kind, n, thr, length_thr, length_steps, deletion_thr = m.groups()
    if any(x is not None for x in (thr, length_thr, length_steps, deletion_thr)) and kind != "refine":
        raise ValueError(f"bad decoding mode {mode!r}: only refine takes @<threshold>, +lp, +ls and +dt")
    if kind == "greedy":
        if n:
            raise ValueError(f"bad decoding mode {mode!r}: greedy takes no number")
        return replace(base, method="greedy")
    if kind == "beam":
        return replace(base, method="beam", beam_size=int(n) if n else base.beam_size)
    opts = replace(base, method="refine", iterations=int(n) if n else base.iterations)
    if thr is not None:
        if not 0.0 <= float(thr) <= 1.0:
            raise ValueError(f"bad decoding mode {mode!r}: the threshold is a probability in [0, 1]")
        opts = replace(opts, threshold=float(thr))
    if length_thr is not None:  # above 1: the length head is never followed (CTC's counts are kept)
        opts = replace(opts, length_threshold=float(length_thr))
    if length_steps is not None:
        opts = replace(opts, length_steps=int(length_steps))
    if deletion_thr is not None:  # above 1: no mask is deleted
        opts = replace(opts, deletion_threshold=float(deletion_thr))
    return opts


def split_model_spec(spec: str) -> tuple[str, list[str] | None]:
    """``PATH[:mode,mode...]`` -> (path, modes or None)."""
    path, sep, modes = spec.rpartition(":")
    if sep and "/" not in modes and modes:
        return path, [m.strip() for m in modes.split(",") if m.strip()]
    return spec, None


def _mode_label(mode: str, opts: ASRDecodeOptions) -> str:
    if opts.method == "beam":
        return f"beam{opts.beam_size}"
    if opts.method == "refine":
        return f"refine{opts.iterations}" + re.sub(r"^refine\d*", "", mode)  # + its @threshold, +lp...
    return mode


def add_ar_speedups(rows: list[BenchRow], ar_ref: str | None = None) -> list[BenchRow]:
    """Fill ``speedup_vs_ar`` from the reference row of each device: ``ar_ref`` (a system name) or else the AR row
    with the widest beam."""
    out = list(rows)
    for device in dict.fromkeys(r.device for r in rows):
        idx = [i for i, r in enumerate(rows) if r.device == device]
        same = [rows[i] for i in idx]
        if ar_ref is not None:
            refs = [j for j, x in enumerate(same) if x.system == ar_ref]
        else:
            ars = [j for j, x in enumerate(same) if x.model == "ar"]
            refs = sorted(ars, key=lambda j: int(re.sub(r"\D", "", same[j].system.split()[-1]) or 0))[-1:]
        ups = core.speedups([x.lat_mean_ms for x in same], refs[0] if refs else None)
        for i, up in zip(idx, ups):
            out[i] = replace(rows[i], speedup_vs_ar=up)
    return out


def bench_asr(
    models: Sequence[str], data_dir: str, out_dir: str, methods: Sequence[str] | None = None,
    threads: int = 1, batch_size: int = 32, max_utts: int = 0, beam_size: int = 10, gpu: bool = True,
    repeats: int = 3, base_opts: ASRDecodeOptions | None = None, ar_ref: str | None = None,
) -> list[BenchRow]:
    """Run every (model, mode) on ``data_dir``; CPU rows with ``threads`` threads, GPU rows when CUDA exists.

    ``models``: ``PATH[:mode,...]``; modes not given per model come from ``methods`` or the family defaults
    (:data:`DEFAULT_MODES`). ``base_opts`` holds the other decoding options (threshold, CTC weight, ...).
    """
    from narspeech.asr.task import load_asr_model

    base = replace(base_opts or ASRDecodeOptions(), beam_size=beam_size)
    devices = core.setup(threads, gpu)
    utts = [u for u in read_data_dir(data_dir) if u.text is not None]
    if max_utts:
        utts = utts[:max_utts]
    sr = 16000
    listed = len(utts)
    utts, wavs = load_bench_audio(utts, sr)
    if not utts:
        raise AudioError(f"{data_dir}: no usable utterance to benchmark")
    refs = [u.text or "" for u in utts]
    rows: list[BenchRow] = []
    lengths: dict[str, list[tuple[int, float]]] = {}
    header = markdown_table([]).splitlines()
    print("\n".join(header), flush=True)
    for spec in models:
        mpath, modes = split_model_spec(spec)
        model, tok, cfg = load_asr_model(mpath)
        family = cfg.model.name
        modes = modes or list(methods or default_modes(cfg))
        mname = Path(mpath).parent.name if Path(mpath).name == "model.pt" else Path(mpath).stem
        model_base = base
        if family == "imputer":  # a bare "refine" decodes in as many passes as the training blocks were long
            model_base = replace(base, iterations=cfg.model.conf.block_size)
        for mode in modes:
            opts = parse_mode(mode, model_base)
            label = f"{mname} {_mode_label(mode, opts)}"
            for dev in devices:
                row, pts = bench_model(label, model, tok, wavs, refs, opts, dev, batch_size, sr, threads, repeats=repeats)
                row = replace(row, model=family)
                rows.append(row)
                if dev.type == "cpu":
                    lengths[label] = pts
                print(markdown_table([row]).splitlines()[-1], flush=True)
    rows = add_ar_speedups(rows, ar_ref)
    meta = core.run_meta(threads, repeats, devices, data=str(data_dir), num_utts=len(utts),
                         skipped_utts=listed - len(utts), decode_options=asdict(base))
    preamble = (f"{len(utts)} utterances of {data_dir}, {threads} CPU thread(s), {meta['cpu']}"
                + (f", GPU {meta['gpu']}" if meta["gpu"] else "")
                + f"; batch-1 latency: fastest of {repeats} runs per utterance; x AR: batch-1 speed-up over the AR "
                "reference row; batch gain: full-batch throughput over the batch-1 loop's")
    out = core.write_results(out_dir, meta, [asdict(r) | {"batch_gain": r.batch_gain} for r in rows],
                             markdown_table(rows), preamble)
    plot(rows, lengths, out / "tradeoff.png")
    return rows


def load_bench_audio(utts: Sequence, sample_rate: int) -> tuple[list, list[torch.Tensor]]:
    """The utterances that can be decoded, with their waveforms; each other one is named on stderr and left out of
    every row alike (the rows stay comparable)."""
    import sys

    kept, wavs = [], []
    for u in utts:
        seg = u.segment
        try:
            w = load_audio(u.audio, sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0)
            check_length(w.numel(), sample_rate)
            fbank(w, sample_rate)  # features that would fail in one row fail here, for every row alike
        except AudioError as e:
            msg = str(e) if str(e).startswith(str(u.audio)) else f"{u.audio}: {e}"
            print(f"narspeech bench: skipped {u.utt_id}: {msg}", file=sys.stderr)
            continue
        kept.append(u)
        wavs.append(w)
    if len(kept) < len(utts):
        print(f"narspeech bench: {len(utts) - len(kept)} of {len(utts)} utterances skipped", file=sys.stderr)
    return kept, wavs
