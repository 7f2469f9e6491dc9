"""ASR dataset over Kaldi data dirs: audio -> (speed perturbation) -> 80-dim fbank, text -> token ids.

Randomness (speed factor) is drawn from a generator seeded by ``(seed, epoch, index)``, so an epoch yields the same
batches whatever the number of DataLoader workers and after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from narspeech.audio.features import INT16_SCALE, fbank, min_samples, num_frames, speed_perturb
from narspeech.audio.io import AudioError, load_audio
from narspeech.data.kaldi import Utterance
from narspeech.tasks.base import TaskDataset
from narspeech.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)
IGNORE_ID = -1  # padding value of token sequences


def utterance_duration(u: Utterance) -> float:
    """Duration in seconds (segment times, else the audio header)."""
    from narspeech.audio.io import audio_duration

    if u.segment is not None and u.segment.end > 0:
        return u.segment.end - u.segment.start
    d = audio_duration(u.audio)
    return d - u.segment.start if u.segment is not None else d


@dataclass(frozen=True)
class Example:
    utt_id: str
    feats: torch.Tensor  # (T, D)
    tokens: torch.Tensor  # (L,) int64 (empty when there is no text)


class ASRDataset(TaskDataset):
    """Indexable ASR examples. ``durations`` are read once (headers only) so the sampler can bucket by length.

    Utterances whose header cannot be read, or too short for the encoder, are left out at construction and listed
    in ``problems`` as ``(utt_id, why)``; one that fails later (bad samples) gives ``None``, which :func:`collate`
    drops, so one bad file never stops a training run.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        tokenizer: Tokenizer | None,
        sample_rate: int = 16000,
        speed_factors: Sequence[float] = (1.0,),
        seed: int = 0,
        dither: float = 0.0,
    ) -> None:
        self.utts = list(utts)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.speed_factors = tuple(speed_factors)
        self.seed = seed
        self.dither = dither  # std of added white noise in 16-bit units (Kaldi's default is 1.0); training only
        self.epoch = 0
        self.problems: list[tuple[str, str]] = []
        keep, self.durations = [], []
        # speed perturbation shortens an utterance by up to its largest factor
        shortest = min_samples(sample_rate) / sample_rate * max((1.0, *self.speed_factors))
        for u in self.utts:
            try:
                d = utterance_duration(u)
            except AudioError as e:
                self.problems.append((u.utt_id, str(e)))
                continue
            if d < shortest:
                self.problems.append((u.utt_id, f"{u.audio}: too short ({1000 * d:.0f} ms; at least "
                                                f"{1000 * shortest:.0f} ms needed)"))
                continue
            keep.append(u)
            self.durations.append(d)
        self.utts = keep

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def subset(self, indices: Sequence[int]) -> "ASRDataset":
        """A new dataset of the items ``indices`` with the same settings (durations are not read again)."""
        import copy

        sub = copy.copy(self)
        sub.utts = [self.utts[i] for i in indices]
        sub.durations = [self.durations[i] for i in indices]
        return sub

    def num_frames(self, i: int) -> int:
        """Approximate fbank frames of item ``i`` (at speed 1.0), for batching."""
        return num_frames(int(self.durations[i] * self.sample_rate), self.sample_rate)

    @property
    def lengths(self) -> list[int]:
        """Approximate fbank frames of every item (the bucketing length)."""
        return [self.num_frames(i) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> Example | None:
        try:
            return self._example(i)
        except AudioError as e:
            u = self.utts[i]
            msg = str(e) if str(e).startswith(str(u.audio)) else f"{u.audio}: {e}"
            log.warning("skipped utterance %s: %s", u.utt_id, msg)
            return None

    def _example(self, i: int) -> Example:
        u = self.utts[i]
        seg = u.segment
        wav = load_audio(u.audio, self.sample_rate, seg.start if seg else 0.0, seg.end if seg else -1.0)
        if len(self.speed_factors) > 1 or self.dither > 0:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            factor = self.speed_factors[int(torch.randint(len(self.speed_factors), (1,), generator=g))]
            wav = speed_perturb(wav, factor, self.sample_rate)
            if self.dither > 0:
                wav = wav + torch.randn(wav.shape, generator=g) * (self.dither / INT16_SCALE)
        feats = fbank(wav, self.sample_rate)
        ids = self.tokenizer.encode(u.text) if (self.tokenizer is not None and u.text) else []
        return Example(u.utt_id, feats, torch.tensor(ids, dtype=torch.long))


def collate(examples: Sequence[Example | None]) -> dict | None:
    """Pad a list of examples: feats (B, T, D) zero-padded, tokens (B, L) padded with -1, and their lengths.

    ``None`` items (utterances that failed to load) are dropped; a batch of nothing but those is ``None``."""
    examples = [e for e in examples if e is not None]
    if not examples:
        return None
    feats = torch.nn.utils.rnn.pad_sequence([e.feats for e in examples], batch_first=True)
    tokens = torch.nn.utils.rnn.pad_sequence([e.tokens for e in examples], batch_first=True, padding_value=IGNORE_ID)
    return {
        "utt_ids": [e.utt_id for e in examples],
        "feats": feats,
        "feat_lens": torch.tensor([e.feats.size(0) for e in examples], dtype=torch.long),
        "tokens": tokens,
        "token_lens": torch.tensor([e.tokens.numel() for e in examples], dtype=torch.long),
    }
