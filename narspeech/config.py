"""YAML -> typed dataclasses, with dotted command-line overrides (``optim.lr=1e-3``).

Unknown keys and wrong types are errors that name the key. Two sections are tagged unions, which is why this is not
OmegaConf (its structured configs have no unions of dataclasses): ``model`` is typed by the registered model's own
``Config`` dataclass, chosen by ``model.name``, and ``data`` by the registered task's ``DataConfig``, chosen by
``task`` (default ``asr``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from narspeech.registry import MODELS, TASKS

DEFAULT_TASK = "asr"  # configs and model files written before tasks existed are ASR


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type; the message names the key."""


SCHEDULERS = ("noam", "exponential", "constant")


@dataclass
class GroupOptimConfig:
    """Overrides for one named parameter group (a GAN's ``discriminator``); unset keys take the optim section's."""

    name: str | None = None
    lr: float | None = None
    betas: list[float] | None = None
    weight_decay: float | None = None
    scheduler: str | None = None
    warmup_steps: int | None = None
    lr_decay: float | None = None
    grad_clip: float | None = None
    start_step: int | None = None


@dataclass
class OptimConfig:
    name: str = "adamw"  # "adam" or "adamw"
    lr: float = 1e-3  # peak learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 1e-3
    # after the linear warmup: "noam" (inverse square root decay), "exponential" (lr_decay per optimizer step;
    # HiFi-GAN's 0.999 per epoch is 0.999 ** (1 / steps per epoch)) or "constant"
    scheduler: str = "noam"
    warmup_steps: int = 1000  # linear warmup steps
    lr_decay: float = 0.9999  # the exponential scheduler's factor per step
    grad_clip: float = 5.0  # max gradient norm (0 = off)
    accum_grad: int = 1  # batches per optimizer step
    # a group is stepped from this optimizer step on (a GAN's discriminator after a generator-only warm-up, as
    # Parallel WaveGAN's discriminator_train_start_steps); set it per group in ``groups``
    start_step: int = 0
    # per parameter group of a model trained by several optimizers (e.g. {discriminator: {lr: 2.0e-4}})
    groups: dict[str, GroupOptimConfig] = field(default_factory=dict)

    def for_group(self, group: str) -> "OptimConfig":
        """This section with ``groups[group]``'s set keys applied."""
        over = self.groups.get(group)
        if over is None:
            return self
        return dataclasses.replace(self, groups={}, **{k: v for k, v in dataclasses.asdict(over).items()
                                                      if v is not None})


@dataclass
class TrainConfig:
    max_epochs: int = 50
    max_minutes: float = 0.0  # wall-clock budget (0 = none): stop after the epoch that crosses it
    seed: int = 0
    log_interval: int = 50  # steps between log lines
    save_interval_steps: int = 0  # also checkpoint every N optimizer steps (0 = epoch ends only)
    keep_last: int = 5  # epoch checkpoints kept
    average_best: int = 5  # model.pt = average of the N best epochs by validation CER (1 = best only)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    max_bad_steps: int = 20  # consecutive non-finite losses tolerated before the run aborts
    device: str = "auto"  # "auto", "cpu", "cuda"
    # a model file (or checkpoint) whose weights start a fresh run (ESPnet's --init_param): fine-tuning with other
    # loss weights or options; parameters it lacks keep their initialisation. Ignored when resuming from last.pt
    init_from: str = ""


@dataclass
class ModelSection:
    name: str = "ctc"
    conf: Any = None  # the registered model's Config dataclass


@dataclass
class ExperimentConfig:
    task: str = DEFAULT_TASK  # the registered task: what the data section holds and how models are validated
    model: ModelSection = field(default_factory=ModelSection)
    data: Any = None  # the task's DataConfig dataclass
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` (int -> float allowed), or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not of type {tp}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_check_type(k, kt, f"{key} key"): _check_type(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if k not in names:
            raise ConfigError(f"unknown config key '{prefix + '.' if prefix else ''}{k}'; valid: {', '.join(sorted(names))}")
    kwargs = {k: _check_type(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in values.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict (what checkpoints and ``config.yaml`` store)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def build_model_config(name: str, values: dict | None) -> Any:
    """The registered model's Config dataclass filled from ``values``."""
    try:
        cls = MODELS.get(name)
    except KeyError as e:  # a ConfigError, so `narspeech train` reports it like any other config mistake
        raise ConfigError(f"model.name: {e.args[0]}") from None
    return _build(cls.Config, values or {}, "model.conf")


def build_data_config(task: str, values: dict | None) -> Any:
    """The registered task's DataConfig dataclass filled from ``values``."""
    try:
        cls = TASKS.get(task)
    except KeyError as e:
        raise ConfigError(f"task: {e.args[0]}") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"data: expected a mapping, got {type(values).__name__}")
    return _build(cls.DataConfig, values or {}, "data")


def config_from_dict(d: dict) -> ExperimentConfig:
    """Typed config from a plain dict (the YAML document)."""
    d = dict(d)
    task = d.pop("task", DEFAULT_TASK)
    if not isinstance(task, str):
        raise ConfigError(f"task: expected str, got {task!r}")
    data = build_data_config(task, d.pop("data", None))
    model = dict(d.pop("model", {}) or {})
    name = model.pop("name", TASKS.get(task).default_model)
    conf = model.pop("conf", {})
    if model:
        raise ConfigError(f"unknown config key 'model.{next(iter(model))}'; valid: name, conf")
    if not isinstance(name, str):
        raise ConfigError(f"model.name: expected str, got {name!r}")
    cfg = _build(ExperimentConfig, d)
    cfg.task = task
    cfg.data = data
    cfg.model = ModelSection(name, build_model_config(name, conf))
    return cfg


def parse_value(text: str) -> Any:
    """A command-line value, read as YAML (``1e-3`` -> float, ``[a, b]`` -> list, ``true`` -> bool); an empty one
    (``model.conf.teacher=``) is the empty string, as in Hydra, not YAML's null."""
    if not text.strip():
        return ""
    v = yaml.safe_load(text)
    # YAML 1.1 reads "1e-3" as a string; accept it as a float
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eE") and not v.isalpha() else v
        except ValueError:
            return v
    return v


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides to a plain dict (a copy); the typed build then checks keys and types."""
    import copy

    d = copy.deepcopy(d)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key.subkey=value")
        key, val = ov.split("=", 1)
        parts = key.lstrip("-").split(".")
        node = d
        for p in parts[:-1]:
            if node.get(p) is None:  # "conf:" left empty in the YAML is an empty section
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = parse_value(val)
    return d


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply dotted overrides."""
    d: dict = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: the config must be a YAML mapping")
    try:
        return config_from_dict(apply_overrides(d, list(overrides)))
    except ConfigError as e:
        raise ConfigError(f"{path or '<defaults>'}: {e}") from None
