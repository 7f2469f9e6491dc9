"""The abstract base every trainable model derives from (what the trainer and checkpoints rely on)."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

from narspeech.train.loss import LossTerm

MAIN_GROUP = "main"  # the one parameter group of a model trained by a single optimizer


class Model(nn.Module, abc.ABC):
    """A trainable model: ``forward(batch) -> dict[str, LossTerm]``; its sizes are a dataclass ``Config``.

    A model trained by several optimizers (a GAN) overrides :meth:`optim_groups` with its named parameter groups in
    step order (e.g. ``discriminator`` then ``generator``, as HiFi-GAN's ``train.py``); the trainer then calls
    ``forward(batch, group=name, cache=cache)`` once per group and batch, with one ``cache`` dict per batch in which
    the model may keep what the later groups reuse (the generator's output); ``cache["groups"]`` names the groups
    stepped on this batch (a group waits for its ``optim.groups.<name>.start_step``: a generator-only warm-up). Submodules named in
    ``training_only`` (the discriminators) are left out of the model file, which keeps what inference needs.
    """

    Config: ClassVar[type]
    training_only: ClassVar[tuple[str, ...]] = ()  # submodules dropped from model files

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Any, **task_args: Any) -> "Model":
        """Build from the model's config dataclass (the only place a config object is unpacked) and what the task
        gives (``Task.model_args()``, e.g. ``vocab_size``)."""

    @abc.abstractmethod
    def forward(self, batch: dict[str, torch.Tensor], **group: Any) -> dict[str, LossTerm]:
        """Training losses of a collated batch (of the parameter group ``group["group"]`` for several groups)."""

    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, each with its own optimizer, in the order their steps run on a batch."""
        return {MAIN_GROUP: [p for p in self.parameters() if p.requires_grad]}

    def active_groups(self, step: int) -> list[str]:
        """The groups stepped at optimizer step ``step`` (e.g. only the generator during a warm-up)."""
        return list(self.optim_groups())

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a model file keeps: every tensor but those of the ``training_only`` submodules."""
        drop = tuple(f"{name}." for name in self.training_only)
        return {k: v for k, v in self.state_dict().items() if not k.startswith(drop)}

    def load_inference_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a model file's weights: exactly the tensors of :meth:`inference_state_dict`, the training-only
        submodules may be absent (they keep their initialisation)."""
        drop = tuple(f"{name}." for name in self.training_only)
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(drop)]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"weights do not fit the model: missing {missing[:5]}, unexpected "
                               f"{result.unexpected_keys[:5]}")
