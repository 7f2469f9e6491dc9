"""Quality metrics: WER/CER via jiwer (edit distance over words / characters); for TTS, mel-cepstral distortion with
DTW and F0 RMSE on the DTW path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np


@dataclass(frozen=True)
class ErrorRate:
    errors: int  # substitutions + deletions + insertions
    ref_len: int  # reference words (or characters)
    sub: int
    dele: int
    ins: int

    @property
    def rate(self) -> float:
        return self.errors / max(1, self.ref_len)

    def __str__(self) -> str:
        return f"{100 * self.rate:.2f}% [{self.errors}/{self.ref_len}, sub {self.sub}, del {self.dele}, ins {self.ins}]"


def _rate(out) -> ErrorRate:
    e = out.substitutions + out.deletions + out.insertions
    return ErrorRate(e, out.substitutions + out.deletions + out.hits, out.substitutions, out.deletions, out.insertions)


def _guard(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    # jiwer rejects empty references; an empty reference scored against a hypothesis counts only insertions
    return [r if r.strip() else "" for r in refs], list(hyps)


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRate:
    refs, hyps = _guard(refs, hyps)
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    extra_ins = sum(len(h.split()) for r, h in zip(refs, hyps) if not r.strip())
    if not pairs:
        return ErrorRate(extra_ins, 0, 0, 0, extra_ins)
    er = _rate(jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs]))
    return ErrorRate(er.errors + extra_ins, er.ref_len, er.sub, er.dele, er.ins + extra_ins)


def char_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> ErrorRate:
    """CER over characters with white space runs kept as one space (as ESPnet scores characters)."""
    refs, hyps = _guard(refs, hyps)
    norm = lambda s: " ".join(s.split())  # noqa: E731
    pairs = [(norm(r), norm(h)) for r, h in zip(refs, hyps) if r.strip()]
    extra_ins = sum(len(norm(h)) for r, h in zip(refs, hyps) if not r.strip())
    if not pairs:
        return ErrorRate(extra_ins, 0, 0, 0, extra_ins)
    er = _rate(jiwer.process_characters([r for r, _ in pairs], [h for _, h in pairs]))
    return ErrorRate(er.errors + extra_ins, er.ref_len, er.sub, er.dele, er.ins + extra_ins)


MCD_COEFFS = 24  # mel-cepstral coefficients c1..c24 (c0, the level, left out as usual)
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # dB per unit of cepstral distance (Kubichek, 1993)


def mel_cepstra(log_mel: np.ndarray, n: int = MCD_COEFFS) -> np.ndarray:
    """(T, n_mels) natural-log mel amplitudes -> (T, n) mel cepstra c1..cn: the cosine series of the log envelope
    sampled uniformly on the mel scale, ``c_k = (2 / K) sum_m L_m cos(pi k (m + 1/2) / K)`` over the K bins, the
    scale of a cepstrum (and of SPTK's mel-cepstra), so MCDs land in the usual few-dB range."""
    from scipy.fft import dct

    x = np.asarray(log_mel, dtype=np.float64)
    return dct(x, type=2, norm="ortho", axis=1)[:, 1 : n + 1] * math.sqrt(2.0 / x.shape[1])


@dataclass(frozen=True)
class SpectralDistance:
    mcd: float  # dB, mean over the DTW path
    path: np.ndarray  # (L, 2) aligned frame pairs (reference, synthesised)


def mel_cepstral_distortion(ref_log_mel: np.ndarray, syn_log_mel: np.ndarray) -> SpectralDistance:
    """MCD (dB) between two log-mels of any lengths, aligned by DTW on their mel cepstra (librosa)."""
    import librosa

    a, b = mel_cepstra(ref_log_mel), mel_cepstra(syn_log_mel)
    _, wp = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    wp = wp[::-1]
    diff = a[wp[:, 0]] - b[wp[:, 1]]
    return SpectralDistance(float(_MCD_SCALE * np.sqrt((diff**2).sum(1)).mean()), wp)


GROSS_PITCH_ERROR = 0.2  # relative F0 deviation counted as a gross error (octave jumps, voicing artefacts)


@dataclass(frozen=True)
class F0Errors:
    rmse: float  # Hz, over every aligned frame voiced in both
    gpe: float  # gross pitch error rate: share of those frames deviating by more than GROSS_PITCH_ERROR
    fine_rmse: float | None  # Hz, over the frames without a gross error (None if all are gross errors)
    frames: int  # aligned frames voiced in both


def f0_errors(ref_f0: np.ndarray, syn_f0: np.ndarray, path: np.ndarray) -> F0Errors | None:
    """Errors of a synthesised F0 track against a reference (0 = unvoiced) over the aligned frame pairs ``path``
    (from :func:`mel_cepstral_distortion`) where both are voiced; None if there are none. The RMSE alone is
    dominated by a few octave jumps of the pitch tracker, hence the gross error rate and the RMSE without them."""
    r = np.asarray(ref_f0, dtype=np.float64)[np.minimum(path[:, 0], len(ref_f0) - 1)]
    s = np.asarray(syn_f0, dtype=np.float64)[np.minimum(path[:, 1], len(syn_f0) - 1)]
    both = (r > 0) & (s > 0)
    if not both.any():
        return None
    r, s = r[both], s[both]
    gross = np.abs(s - r) > GROSS_PITCH_ERROR * r
    fine = None if gross.all() else float(np.sqrt(((r[~gross] - s[~gross]) ** 2).mean()))
    return F0Errors(float(np.sqrt(((r - s) ** 2).mean())), float(gross.mean()), fine, int(both.sum()))
