"""A toy task and GAN for the engine tests: 1-D samples of N(3, 0.5) and a tiny LSGAN that learns them.

Importing this module registers ``toy_1d`` (task) and ``toy_gan`` (model). ``python tests/toy_tasks.py ARGS`` runs
``narspeech ARGS`` with them registered (for the kill-and-resume test, which needs a separate process).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from narspeech.base import Model
from narspeech.registry import MODELS, TASKS
from narspeech.tasks.base import Task, TaskDataset
from narspeech.train.loss import LossTerm

TARGET_MEAN, TARGET_STD = 3.0, 0.5
NOISE_DIM = 4


@dataclass
class ToyDataConfig:
    train: list[str] = field(default_factory=lambda: ["toy"])
    valid: list[str] = field(default_factory=lambda: ["toy"])
    num_samples: int = 512
    batch_size: int = 32
    num_workers: int = 0


class ToyDataset(TaskDataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = TARGET_MEAN + TARGET_STD * torch.randn(n, 1, generator=g)
        self.problems = []

    @property
    def lengths(self) -> list[int]:
        return [1] * len(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor]:
        return f"s{i}", self.x[i]


@TASKS.register("toy_1d")
class Toy1DTask(Task):
    DataConfig = ToyDataConfig
    default_model = "toy_gan"
    metric = "valid_moment_err"
    batch_unit = "samples"

    @classmethod
    def create(cls, data: ToyDataConfig) -> "Toy1DTask":
        return cls(data)

    @classmethod
    def from_state(cls, data: ToyDataConfig, state: dict) -> "Toy1DTask":
        return cls(data)

    def state(self) -> dict:
        return {}

    @property
    def max_batch(self) -> int:
        return self.data.batch_size

    def dataset(self, dirs: Sequence[str], train: bool, seed: int) -> ToyDataset:
        return ToyDataset(self.data.num_samples if train else 256, seed + (0 if train else 1))

    def collate(self, items: Sequence[Any]) -> dict | None:
        return {"utt_ids": [k for k, _ in items], "x": torch.stack([x for _, x in items])}

    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        s = model.sample(2000, torch.Generator().manual_seed(0))
        return {"valid_moment_err": abs(float(s.mean()) - TARGET_MEAN) + abs(float(s.std()) - TARGET_STD)}


@dataclass
class ToyGANConfig:
    hidden: int = 32


@MODELS.register("toy_gan")
class ToyGAN(Model):
    """LSGAN (Mao et al., 2017) on scalars: discriminator step, then generator step."""

    Config = ToyGANConfig
    training_only = ("discriminator",)

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(NOISE_DIM, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.discriminator = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    @classmethod
    def from_config(cls, cfg: ToyGANConfig, **task_args: Any) -> "ToyGAN":
        return cls(cfg.hidden)

    def optim_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.discriminator.parameters()), "generator": list(self.generator.parameters())}

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self.generator(torch.randn(n, NOISE_DIM, generator=generator))

    def forward(self, batch: dict, group: str = "generator", cache: dict | None = None) -> dict[str, LossTerm]:
        cache = {} if cache is None else cache
        if "fake" not in cache:  # the generator runs once per batch; both steps use its output
            z = batch["z"] if "z" in batch else torch.randn(batch["x"].size(0), NOISE_DIM, device=batch["x"].device)
            cache["fake"] = self.generator(z)
        fake = cache["fake"]
        if group == "discriminator":
            real = self.discriminator(batch["x"])
            loss = ((real - 1) ** 2).mean() + (self.discriminator(fake.detach()) ** 2).mean()
            return {"d_adv": LossTerm(loss)}
        return {"g_adv": LossTerm(((self.discriminator(fake) - 1) ** 2).mean())}


if __name__ == "__main__":
    from narspeech.cli import main

    sys.exit(main(sys.argv[1:]))
