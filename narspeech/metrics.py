"""Quality metrics: WER/CER via jiwer (edit distance over words / characters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer


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
