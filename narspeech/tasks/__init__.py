"""Tasks: what differs between model families (data, batching, validation metric, model-file contents); see
:mod:`narspeech.tasks.base`. Each family registers its own task (``narspeech.asr.task``, ...)."""

from narspeech.tasks.base import Task, TaskDataset

__all__ = ["Task", "TaskDataset"]
