"""TTS evaluation protocol: quality and latency of TTS models on the same sentences, in one process.

Quality, against the ground-truth recordings of a data dir: MCD (dB, mel cepstra c1-c24 of the log-mel, DTW-aligned)
and F0 errors (Praat F0 on the DTW path, frames voiced in both: RMSE in Hz, the gross pitch error rate (> 20 %
off: octave jumps, which Griffin-Lim's phase artefacts provoke in the tracker) and the RMSE without those); the ASR round-trip CER of the synthesised speech
with two judges, the project's own ASR model (``--asr-model``) and the independent recognizer pocketsphinx (its
wheel carries a US English model), each also scored on the ground-truth audio: the judge's floor. Latency: mel
generation at batch 1 (fastest of ``repeats`` per sentence) and full-batch throughput, per device; end-to-end
real-time factor with the vocoder (Griffin-Lim). Writes ``results.{json,md}``, ``tradeoff.png`` (CER vs latency, and
latency vs input length: NAR generation should stay flat), ``sample_<utt>.png`` (mel, pitch, durations) and the
synthesised wavs under ``wav/<system>/``.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from narspeech.audio.io import AudioError, load_audio, resample, save_wav
from narspeech.audio.mel import log_mel, pitch
from narspeech.bench import core
from narspeech.data.kaldi import Utterance, read_data_dir
from narspeech.metrics import char_error_rate, f0_errors, mel_cepstral_distortion
from narspeech.tts.synthesize import TTS, check_text
from narspeech.tts.task import encode_texts
from narspeech.vocoder.griffin_lim import griffin_lim

JUDGE_RATE = 16000  # both judges take 16 kHz audio
GROUND_TRUTH = "ground truth"
_PUNCT = re.compile(r"[^\w' ]+")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


class Judges:
    """The ASR judges of round-trip CER: pocketsphinx (when installed) and optionally a narspeech ASR model."""

    def __init__(self, asr_model: str | None) -> None:
        self.names: list[str] = []
        try:
            from pocketsphinx import Decoder

            self.sphinx = Decoder(loglevel="FATAL")
            self.names.append("pocketsphinx")
        except Exception as e:  # an optional judge: the bench still runs without it
            print(f"bench tts: pocketsphinx unavailable ({e}); its CER column is left out", file=sys.stderr)
            self.sphinx = None
        self.asr = None
        if asr_model:
            from narspeech.asr.task import load_asr_model

            model, tok, _ = load_asr_model(asr_model)
            self.asr = (model.eval(), tok)
            self.names.append("asr")

    def __call__(self, wav16: torch.Tensor) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.sphinx is not None:
            pcm = (wav16.clamp(-1, 1).numpy() * 32767).astype(np.int16).tobytes()
            self.sphinx.start_utt()
            self.sphinx.process_raw(pcm, full_utt=True)
            self.sphinx.end_utt()
            hyp = self.sphinx.hyp()
            out["pocketsphinx"] = hyp.hypstr if hyp else ""
        if self.asr is not None:
            from narspeech.asr.base import ASRDecodeOptions
            from narspeech.asr.transcribe import decode_features
            from narspeech.audio.features import fbank

            model, tok = self.asr
            with torch.inference_mode():
                out["asr"] = decode_features(model, tok, [fbank(wav16, JUDGE_RATE)], ASRDecodeOptions())[0]
        return out


def _plot_sample(out: Path, utt: str, ref_mel: np.ndarray, res: dict, system: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(9, 7))
    ax[0].imshow(ref_mel.T, origin="lower", aspect="auto")
    ax[0].set_title(f"{utt}: ground-truth log-mel")
    ax[1].imshow(res["mel"].numpy().T, origin="lower", aspect="auto")
    ax[1].set_title(f"{system}: synthesised log-mel")
    d = res["durations"].numpy()
    ends = np.cumsum(d)
    ax[2].step(np.concatenate([[0], ends]), np.concatenate([[res["pitch"][0].item()], res["pitch"].numpy()]),
               where="pre")
    for e, tok in zip(ends - d / 2, res["tokens"]):
        ax[2].annotate(tok, (e, 0), xycoords=("data", "axes fraction"), fontsize=6, ha="center")
    ax[2].set_xlim(0, max(1, ends[-1] if len(ends) else 1))
    ax[2].set_title("predicted pitch per phoneme (Hz) over its frames (durations)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def bench_tts(models: Sequence[str], data: str, out_dir: str, asr_model: str | None = None, threads: int = 1,
              batch_size: int = 16, max_utts: int = 0, repeats: int = 3, rtf_utts: int = 10,
              gpu: bool = True) -> list[dict]:
    """Run the protocol (module docstring); returns the rows written to ``results.json``."""
    devices = core.setup(threads, gpu)
    out = Path(out_dir)
    utts = read_data_dir(data)
    utts = utts[:max_utts] if max_utts else utts
    judges = Judges(asr_model)
    # 1. ground truth: its mel, F0 and what each judge hears (the floor of the round-trip CER)
    refs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    hyps: dict[str, dict[str, list[str]]] = {GROUND_TRUTH: {j: [] for j in judges.names}}
    kept: list[Utterance] = []
    for u in utts:
        try:
            wav = load_audio(u.audio, 22050)
            refs[u.utt_id] = (log_mel(wav).numpy(), pitch(wav).numpy())
        except AudioError as e:
            print(f"bench tts: skipped {u.utt_id}: {e}", file=sys.stderr)
            continue
        kept.append(u)
        for j, h in judges(resample(wav, 22050, JUDGE_RATE)).items():
            hyps[GROUND_TRUTH][j].append(h)
    texts = [_norm(u.text or "") for u in kept]
    rows = [{"system": GROUND_TRUTH, "device": "", **{f"cer_{j}": char_error_rate(texts, hyps[GROUND_TRUTH][j]).rate
                                                    for j in judges.names}}]
    lengths: dict[str, list[tuple[int, float]]] = {}
    points = []
    for path in models:
        name = Path(path).parent.name or Path(path).stem
        for dev in devices:
            tts = TTS.load(path, dev)
            if tts.mel.sample_rate != 22050:
                raise ValueError(f"{path}: mel at {tts.mel.sample_rate} Hz; bench tts compares at 22050 Hz")
            good = [u for u in kept if check_text(u.text or "", tts) is None]
            ids = encode_texts(tts.tokenizer, [u.text or "" for u in good])
            system = f"{name} ({dev.type})"
            # 2. latency of mel generation: batch 1 per sentence, then full batches sorted by length
            lat, results = [], {}
            for u, seq in zip(good, ids):
                tok = torch.tensor([seq], device=dev)
                lens = torch.tensor([len(seq)], device=dev)
                res, ms = core.fastest(lambda: tts.model.infer(tok, lens), dev, repeats)
                lat.append(ms)
                n = int(res["mel_lens"][0])
                results[u.utt_id] = {"mel": res["mel"][0, :n].float().cpu(), "durations": res["durations"][0].cpu(),
                                     "pitch": res["pitch"][0].float().cpu(), "tokens": tts.tokenizer.ids_to_tokens(seq)}
            lengths[system] = [(len(s), ms) for s, ms in zip(ids, lat)]
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))

            def run_batch(idx: Sequence[int]) -> None:
                tok = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids[i]) for i in idx], batch_first=True,
                                                      padding_value=-1).to(dev)
                tts.model.infer(tok, torch.tensor([len(ids[i]) for i in idx], device=dev))

            per_s = core.throughput(run_batch, order, batch_size, dev)
            row = {"system": system, "device": dev.type, "utts": len(good), "latency_ms": statistics.mean(lat),
                   "latency_p90_ms": core.percentile(lat, 0.9), "utts_per_s_batch": per_s}
            # 3. end-to-end real-time factor with Griffin-Lim (first rtf_utts sentences, batch 1)
            tot_s, tot_audio = 0.0, 0.0
            for u, seq in list(zip(good, ids))[:rtf_utts]:
                t0 = time.perf_counter()
                res = tts.model.infer(torch.tensor([seq], device=dev), torch.tensor([len(seq)], device=dev))
                w = griffin_lim(res["mel"][0, : int(res["mel_lens"][0])].float().cpu(), tts.mel)
                tot_s += time.perf_counter() - t0
                tot_audio += w.numel() / tts.mel.sample_rate
            row["rtf_griffin_lim"] = tot_s / max(tot_audio, 1e-9)
            if dev.type == "cpu":  # 4. quality once per model (the device does not change the output)
                mcd, f0e, judged = [], [], {j: [] for j in judges.names}
                wav_dir = out / "wav" / name
                wav_dir.mkdir(parents=True, exist_ok=True)
                for u in good:
                    r = results[u.utt_id]
                    ref_mel, ref_f0 = refs[u.utt_id]
                    dist = mel_cepstral_distortion(ref_mel, r["mel"].numpy())
                    mcd.append(dist.mcd)
                    wav = griffin_lim(r["mel"], tts.mel)
                    save_wav(wav_dir / f"{u.utt_id}.wav", wav, tts.mel.sample_rate)
                    e = f0_errors(ref_f0, pitch(wav).numpy(), dist.path)
                    if e is not None:
                        f0e.append(e)
                    for j, h in judges(resample(wav, tts.mel.sample_rate, JUDGE_RATE)).items():
                        judged[j].append(h)
                gtexts = [_norm(u.text or "") for u in good]
                fine = [e.fine_rmse for e in f0e if e.fine_rmse is not None]
                row.update({"mcd_db": statistics.mean(mcd),
                            "f0_rmse_hz": statistics.mean(e.rmse for e in f0e) if f0e else None,
                            "f0_gpe": sum(e.gpe * e.frames for e in f0e) / max(1, sum(e.frames for e in f0e)),
                            "f0_fine_rmse_hz": statistics.mean(fine) if fine else None,
                            **{f"cer_{j}": char_error_rate(gtexts, judged[j]).rate for j in judges.names}})
                if good:
                    u0 = good[0]
                    _plot_sample(out / f"sample_{u0.utt_id}.png", u0.utt_id, refs[u0.utt_id][0],
                                 results[u0.utt_id], name)
            rows.append(row)
            if judges.names and "cer_" + judges.names[0] in row:
                points.append(core.TradeoffPoint(system, name, row["latency_ms"], 100 * row["cer_" + judges.names[0]]))
    meta = core.run_meta(threads, repeats, devices, data=data, judges=judges.names, vocoder="griffin-lim")
    core.write_results(out, meta, rows, _table(rows, judges.names), f"# bench tts: {data}, {len(kept)} sentences")
    if points:
        core.plot_tradeoff(points, f"round-trip CER (%), {judges.names[0]}", out / "tradeoff.png", lengths,
                           length_label="input tokens (phonemes)")
    return rows


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _table(rows: Sequence[dict], judges: Sequence[str]) -> str:
    cols = [("system", "system", False), ("mcd_db", "MCD dB", False), ("f0_rmse_hz", "F0 RMSE Hz", False),
            ("f0_gpe", "F0 GPE %", True), ("f0_fine_rmse_hz", "F0 RMSE w/o GPE Hz", False)]
    cols += [(f"cer_{j}", f"CER % {j}", True) for j in judges]
    cols += [("latency_ms", "mel ms, batch 1", False), ("utts_per_s_batch", "utt/s, full batch", False),
             ("rtf_griffin_lim", "RTF +GL", False)]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(k), pct) for k, _, pct in cols) + " |" for r in rows]
    return "\n".join(lines)
