"""The ASR task: Kaldi data dirs (``wav.scp``, ``text``) -> 80-dim fbank batches and token ids; validated by CER
of the model's default decoding; the model file carries the tokenizer (CMVN statistics live in the weights)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from narspeech.data.dataset import ASRDataset, collate
from narspeech.data.kaldi import DataDirError, read_data_dir
from narspeech.metrics import char_error_rate
from narspeech.registry import TASKS
from narspeech.tasks.base import Task
from narspeech.text.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_state

log = logging.getLogger(__name__)


@dataclass
class ASRDataConfig:
    train: list[str] = field(default_factory=list)  # Kaldi data dirs
    valid: list[str] = field(default_factory=list)
    tokenizer: str = ""  # tokenizer dir written by `narspeech tokens`
    cmvn: str = ""  # CMVN stats written by `narspeech cmvn` ("" = no normalization)
    sample_rate: int = 16000
    max_frames: int = 12000  # fbank frames (10 ms) per batch, padding included
    max_utt_seconds: float = 30.0  # longer training utterances are skipped (and reported)
    speed_perturb: list[float] = field(default_factory=lambda: [1.0])  # factors drawn uniformly per utterance
    dither: float = 1.0  # training-time white noise, std in 16-bit units (Kaldi's default)
    num_workers: int = 2


def load_cmvn(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return torch.tensor(d["mean"]), torch.tensor(d["std"])


@TASKS.register("asr")
class ASRTask(Task):
    """Speech -> text with a tokenizer; the metric is the CER of the model's default (greedy) decoding."""

    DataConfig = ASRDataConfig
    default_model = "ctc"
    metric = "valid_cer"
    batch_unit = "frames"
    item_noun = "utterances"

    def __init__(self, data: ASRDataConfig, tokenizer: Tokenizer) -> None:
        super().__init__(data)
        self.tokenizer = tokenizer

    @classmethod
    def create(cls, data: ASRDataConfig) -> "ASRTask":
        return cls(data, load_tokenizer(data.tokenizer))

    @classmethod
    def from_state(cls, data: ASRDataConfig, state: dict) -> "ASRTask":
        return cls(data, tokenizer_from_state(state["tokenizer"]))

    def state(self) -> dict:
        return {"tokenizer": self.tokenizer.state()}

    def model_args(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.vocab_size}

    def init_model(self, model: torch.nn.Module) -> None:
        if self.data.cmvn and hasattr(model, "cmvn"):
            model.cmvn.set_stats(*load_cmvn(self.data.cmvn))

    @property
    def max_batch(self) -> int:
        return self.data.max_frames

    def dataset(self, dirs: Sequence[str], train: bool, seed: int) -> ASRDataset:
        utts = [u for d in dirs for u in read_data_dir(d)]
        if not utts:
            raise DataDirError(f"no utterances in {' '.join(dirs)}")
        d = self.data
        ds = ASRDataset(utts, self.tokenizer, d.sample_rate, d.speed_perturb if train else (1.0,), seed,
                        d.dither if train else 0.0)
        if train:
            keep = [i for i, dur in enumerate(ds.durations) if dur <= d.max_utt_seconds]
            if len(keep) < len(ds):
                ds.problems += [(ds.utts[i].utt_id, f"longer than data.max_utt_seconds={d.max_utt_seconds:g}")
                                for i in sorted(set(range(len(ds))) - set(keep))]
                ds = ds.subset(keep)
        return ds

    def collate(self, items: Sequence[Any]) -> dict | None:
        return collate(items)

    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        from narspeech.asr.base import ASRDecodeOptions, ASRModel

        if not isinstance(model, ASRModel):
            return {}
        refs, hyps = [], []
        for batch in batches:
            hyp_ids = model.infer(batch["feats"], batch["feat_lens"], ASRDecodeOptions())
            hyps += [self.tokenizer.decode(h) for h in hyp_ids]
            refs += [self.tokenizer.decode(t[t >= 0].tolist()) for t in batch["tokens"].cpu()]
        return {"valid_cer": char_error_rate(refs, hyps).rate} if refs else {}


def load_asr_model(path: str, map_location: str | torch.device = "cpu"):
    """``(model, tokenizer, config)`` of an ASR model file; :class:`CheckpointError` naming the file when it is
    another task's (a TTS model given to ``transcribe``)."""
    from narspeech.train.checkpoint import CheckpointError, load_model

    model, task, cfg = load_model(path, map_location)
    if not isinstance(task, ASRTask):
        raise CheckpointError(f"{path}: a {cfg.task!r} model file, not an ASR model")
    return model, task.tokenizer, cfg
