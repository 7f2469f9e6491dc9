"""Name -> class registries, checked against an abstract base (in the spirit of ESPnet's ClassChoices)."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from narspeech.base import Model
from narspeech.tasks.base import Task

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a subclass of ``base``; unknown names raise an error that lists the valid ones.

    ``builtin_modules`` are imported on first look-up: importing them registers the built-in classes.
    """

    def __init__(self, kind: str, base: type[T], builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.base = base
        self.builtin_modules = builtin_modules
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str):
        def deco(cls: type[T]) -> type[T]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{cls!r} registered as {self.kind} {name!r} is not a subclass of {self.base.__name__}")
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self._classes[name].__name__}")
            self._classes[name] = cls
            return cls

        return deco

    def get(self, name: str) -> type[T]:
        self._import_builtins()
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self._classes))}")
        return self._classes[name]

    def names(self) -> list[str]:
        self._import_builtins()
        return sorted(self._classes)

    def _import_builtins(self) -> None:
        for m in self.builtin_modules:
            importlib.import_module(m)


MODELS: Registry[Model] = Registry("model", Model, builtin_modules=("narspeech.asr", "narspeech.mt", "narspeech.tts"))

TASKS: Registry[Task] = Registry("task", Task, builtin_modules=("narspeech.asr.task", "narspeech.tasks.text2text",
                                                               "narspeech.tts.task"))
