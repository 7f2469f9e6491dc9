"""Synthetic corpora from espeak-ng: the audio pipeline shared by :mod:`narspeech.recipes.mini` and
:mod:`narspeech.recipes.ljsynth`.

One :class:`SynthJob` per utterance: 22.05 kHz espeak output, edge silence trimmed/padded to :data:`EDGE_SILENCE_S`,
resampled to 16 kHz with torchaudio, written as 16-bit PCM (atomically) with the job's key in the wav's comment, so a
rerun reuses exactly the wavs made from the same text, voice, rate and pitch. Jobs run in ``nj`` processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from narspeech.data.kaldi import Utterance, write_data_dir, write_kv
from narspeech.progress import progress

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE = 16000  # what the rest of the toolkit (fbank front-ends, vocoders) expects
EDGE_SILENCE_S = 0.1  # silence kept (or padded) before the first and after the last sound
PEAK_LIMIT = 0.95  # louder utterances are scaled down to this peak; quieter voices keep their level
SILENCE_THRESHOLD = 0.01  # |sample| / peak below which an edge sample counts as silence
WORKER_CHUNK = 16  # utterances per task sent to a worker: amortizes pickling without starving the last worker
SINGLE_SPEAKER = "single"  # speaker id of a one-voice (TTS) corpus
SINGLE_RATE = 165  # words per minute of that voice: espeak-ng's default 175 is brisk for TTS targets
AUDIO_KEY_VERSION = "narspeech-mini-2"  # bump when the audio pipeline changes, to invalidate reused wavs


@dataclass(frozen=True)
class SynthJob:
    """One utterance to synthesize: ``text`` spoken by ``voice`` at ``rate`` (words per minute) and ``pitch``,
    written to ``path``; ``version`` names the audio pipeline in the wav's reuse key."""

    utt_id: str
    text: str
    speaker: str  # speaker id written to utt2spk
    voice: str
    rate: int
    pitch: int
    path: str
    version: str = AUDIO_KEY_VERSION
    sample_rate: int = TARGET_SAMPLE_RATE  # of the written wav (TTS corpora keep espeak-ng's own 22.05 kHz)

    @property
    def key(self) -> str:
        """What the wav must have been made from to be reused; stored as the wav's comment."""
        rate = "" if self.sample_rate == TARGET_SAMPLE_RATE else f"|{self.sample_rate}Hz"
        return f"{self.version}|{self.voice}|{self.rate}|{self.pitch}{rate}|{self.text}"


def trim_edges(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Keep exactly :data:`EDGE_SILENCE_S` of silence at each end (trimming or zero-padding)."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        raise ValueError("espeak-ng produced silence")
    loud = np.flatnonzero(np.abs(wave) > SILENCE_THRESHOLD * peak)
    edge = int(round(EDGE_SILENCE_S * sample_rate))
    first, last = loud[0], loud[-1] + 1
    core = wave[max(0, first - edge) : last + edge]
    pad_start = edge - (first - max(0, first - edge))
    pad_end = edge - (min(len(wave), last + edge) - last)
    return np.pad(core, (pad_start, pad_end))


def _read_duration_if_reusable(job: SynthJob) -> float | None:
    """The duration of an existing wav made from the same key, else None (missing, unreadable or stale)."""
    import soundfile as sf

    try:
        with sf.SoundFile(job.path) as f:
            ok = f.samplerate == job.sample_rate and f.channels == 1 and f.frames > 0 and f.comment == job.key
            return f.frames / f.samplerate if ok else None
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None


def _make_wav(job: SynthJob) -> float:
    """Synthesize, trim, resample and write one utterance atomically; return its duration in seconds."""
    from narspeech.audio.io import resample, save_wav
    from narspeech.recipes import espeak

    wave = espeak.synthesize(job.text, job.voice, job.rate, job.pitch)
    wave = resample(trim_edges(wave, espeak.SAMPLE_RATE), espeak.SAMPLE_RATE, job.sample_rate).numpy()
    # some variants (and the sinc resampler's overshoot) reach full scale: scale those down rather than clip
    peak = float(np.abs(wave).max())
    if peak > PEAK_LIMIT:
        wave = wave * (PEAK_LIMIT / peak)
    # the key stored in the wav lets a rerun reuse it only when voice, rate, pitch and text are unchanged
    return save_wav(job.path, wave, job.sample_rate, comment=job.key) / job.sample_rate


def _make_wavs(jobs: Sequence[SynthJob]) -> list[float]:
    return [_make_wav(j) for j in jobs]


def _init_worker() -> None:
    import torch

    # nj processes already fill the cores; intra-op threads would only oversubscribe them
    torch.set_num_threads(1)


def _chunks(items: Sequence[SynthJob], size: int) -> Iterator[Sequence[SynthJob]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def generate_audio(jobs: Sequence[SynthJob], nj: int) -> dict[str, float]:
    """Make the missing wavs with ``nj`` processes; return every utterance's duration in seconds."""
    durations: dict[str, float] = {}
    todo: list[SynthJob] = []
    for job in jobs:
        d = _read_duration_if_reusable(job)
        if d is None:
            todo.append(job)
        else:
            durations[job.utt_id] = d
    logger.info("%d wavs to synthesize, %d reused", len(todo), len(durations))
    if not todo:
        return durations
    chunks = list(_chunks(todo, WORKER_CHUNK))
    results: list[float] = []
    with progress(total=len(todo), desc="synthesize", unit="wav") as bar:
        if nj <= 1 or len(todo) <= WORKER_CHUNK:
            for chunk in chunks:
                results += _make_wavs(chunk)
                bar.update(len(chunk))
        else:
            # spawn, not fork: a fork after the parent has used torch's OpenMP pool can deadlock the child
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=nj, mp_context=ctx, initializer=_init_worker) as pool:
                for chunk, durs in zip(chunks, pool.map(_make_wavs, chunks)):  # in order, as they finish
                    results += durs
                    bar.update(len(chunk))
    durations.update((j.utt_id, d) for j, d in zip(todo, results))
    return durations


def write_split(split_dir: str | os.PathLike, utts: Sequence[Utterance], durations: dict[str, float]) -> None:
    """Write one Kaldi data directory plus ``utt2dur``, and log its size."""
    split_dir = Path(split_dir)
    write_data_dir(split_dir, utts)
    write_kv(split_dir / "utt2dur", {u.utt_id: f"{durations[u.utt_id]:.3f}" for u in utts})
    total = sum(durations[u.utt_id] for u in utts)
    logger.info("%s: %d utterances, %d speakers, %.1f min of audio (mean %.2f s)", split_dir.name, len(utts),
                len({u.speaker for u in utts}), total / 60, total / max(len(utts), 1))  # fmt: skip


def check_sizes(**sizes: int) -> None:
    """Raise ValueError naming the first negative set size."""
    for name, n in sizes.items():
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")


def require_espeak() -> None:
    """Fail before forking workers, with the loader's message, when espeak-ng cannot be used here."""
    from narspeech.recipes import espeak

    ok, why = espeak.is_available()
    if not ok:
        raise espeak.EspeakError(why)
