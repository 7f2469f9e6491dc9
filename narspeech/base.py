"""The abstract base every trainable model derives from (what the trainer and checkpoints rely on)."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from narspeech.train.loss import LossTerm


class Model(nn.Module, abc.ABC):
    """A trainable model: ``forward(batch) -> dict[str, LossTerm]``; its sizes are a dataclass ``Config``."""

    Config: ClassVar[type]

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Any, vocab_size: int) -> "Model":
        """Build from the model's config dataclass (the only place a config object is unpacked)."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, LossTerm]:
        """Training losses of a collated batch."""
