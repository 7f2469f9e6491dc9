"""ASR dataset over Kaldi data dirs: audio -> (speed perturbation) -> 80-dim fbank, text -> token ids.

Randomness (speed factor) is drawn from a generator seeded by ``(seed, epoch, index)``, so an epoch yields the same
batches whatever the number of DataLoader workers and after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from narspeech.audio.features import INT16_SCALE, fbank, num_frames, speed_perturb
from narspeech.audio.io import AudioError, load_audio
from narspeech.data.kaldi import Utterance
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


class ASRDataset(Dataset):
    """Indexable ASR examples. ``durations`` are read once (headers only) so the sampler can bucket by length."""

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
        self.durations = [utterance_duration(u) for u in self.utts]

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

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> Example:
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
        if feats.size(0) == 0:
            raise AudioError(f"{u.audio}: utterance {u.utt_id!r} is too short for one fbank frame")
        ids = self.tokenizer.encode(u.text) if (self.tokenizer is not None and u.text) else []
        return Example(u.utt_id, feats, torch.tensor(ids, dtype=torch.long))


def collate(examples: Sequence[Example]) -> dict:
    """Pad a list of examples: feats (B, T, D) zero-padded, tokens (B, L) padded with -1, and their lengths."""
    feats = torch.nn.utils.rnn.pad_sequence([e.feats for e in examples], batch_first=True)
    tokens = torch.nn.utils.rnn.pad_sequence([e.tokens for e in examples], batch_first=True, padding_value=IGNORE_ID)
    return {
        "utt_ids": [e.utt_id for e in examples],
        "feats": feats,
        "feat_lens": torch.tensor([e.feats.size(0) for e in examples], dtype=torch.long),
        "tokens": tokens,
        "token_lens": torch.tensor([e.tokens.numel() for e in examples], dtype=torch.long),
    }
