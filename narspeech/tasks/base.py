"""The Task slot: what differs between families (ASR, TTS, vocoder, text-to-text), so that the trainer, the model
files and the bench know no family.

A task turns the ``data:`` section of an experiment config into datasets and batches, says how long an item is
for bucketing (feature frames, samples or tokens), computes the validation metric from the model's inference, and
names what a model file must carry besides the weights (tokenizer, phoneme set, feature statistics). Adding a family
adds a Task (registered in :data:`narspeech.registry.TASKS`) and its models, never a branch in the trainer.

Minimal new task::

    @TASKS.register("copy")
    class CopyTask(Task):
        DataConfig = CopyDataConfig            # a dataclass: the `data:` section, every key typed
        metric = "valid_err"                    # a key evaluate() returns; lower is better (None: valid_loss)
        @classmethod
        def create(cls, data): ...              # for training: read tokenizers/statistics named by the config
        @classmethod
        def from_state(cls, data, state): ...   # from a model file: everything comes from state()
        def state(self): ...                    # plain data and tensors stored in model.pt
        def model_args(self): ...               # keyword arguments of Model.from_config (e.g. vocab_size)
        def dataset(self, dirs, train, seed): ...   # a TaskDataset
        def collate(self, items): ...           # list of dataset items (None = failed) -> batch dict or None
        def evaluate(self, model, batches): ... # {metric: value} over validation batches
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset


class TaskDataset(Dataset):
    """A dataset the trainer can bucket: ``lengths[i]`` is item ``i``'s size in the unit the task batches by
    (``Task.batch_unit``); ``problems`` lists ``(key, why)`` for the entries left out as unusable. ``set_epoch`` lets
    on-the-fly augmentation depend on ``(seed, epoch, index)`` only, so resumed runs see the same batches."""

    lengths: list[int]
    problems: list[tuple[str, str]]

    def set_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called before each training epoch (default: nothing to do)."""

    def subset(self, indices: Sequence[int]) -> "TaskDataset":
        raise NotImplementedError


class Task(abc.ABC):
    """One family's data, batching, validation metric and model-file contents (see the module docstring)."""

    DataConfig: ClassVar[type]  # must have train, valid (lists of data dirs) and num_workers (DataLoader)
    default_model: ClassVar[str]  # the model a config of this task without model.name gets
    metric: ClassVar[str | None] = None  # validation key used to pick the best epochs; lower is better
    batch_unit: ClassVar[str] = "frames"  # what ``lengths`` count and the data config's batch cap limits
    item_noun: ClassVar[str] = "items"  # what one entry of a data dir is called in messages ("utterances")

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    @abc.abstractmethod
    def create(cls, data: Any) -> "Task":
        """The task for training, from the config's ``data:`` section (reads the files it names)."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, data: Any, state: dict) -> "Task":
        """The task of a model file: ``state`` is what :meth:`state` returned at training time."""

    @abc.abstractmethod
    def state(self) -> dict:
        """What the model file must carry for inference besides the weights (plain data and tensors only)."""

    def model_args(self) -> dict[str, Any]:
        """Keyword arguments the task gives ``Model.from_config`` (e.g. ``vocab_size``)."""
        return {}

    def init_model(self, model: torch.nn.Module) -> None:  # noqa: B027 - optional hook
        """Set what the model takes from the data before training (e.g. feature statistics)."""

    @property
    @abc.abstractmethod
    def max_batch(self) -> int:
        """Cap on a batch's padded size, in ``batch_unit`` (e.g. ``data.max_frames``)."""

    @abc.abstractmethod
    def dataset(self, dirs: Sequence[str], train: bool, seed: int) -> TaskDataset:
        """The items of the data dirs (training augmentation only when ``train``); unusable ones in ``problems``."""

    @abc.abstractmethod
    def collate(self, items: Sequence[Any]) -> dict | None:
        """A padded batch of dataset items; ``None`` items (failed to load) are dropped, and a batch of nothing
        but those is ``None``."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        """Validation metrics from the model's inference over device batches (the model is in eval mode)."""
