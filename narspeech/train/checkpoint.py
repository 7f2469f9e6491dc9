"""Checkpoints: atomic writes (temp file + rename), ``weights_only=True`` loads, averaging, self-contained models.

A training checkpoint holds ``{format, config, task, task_state, model, optimizers, schedulers, scalers, step,
epoch, batch_in_epoch, rng, history, elapsed}``; a model file (``exp/<name>/model.pt``) the same without the
optimizer state and the training-only submodules. ``task_state`` is what the task needs at inference (the ASR
tokenizer, ...). Everything is plain data and tensors, so loading never unpickles code. Files of the first format
(``narspeech-1``: ASR only, the tokenizer at the top level) still load.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

FORMAT = "narspeech-2"
FORMATS = ("narspeech-1", FORMAT)  # the formats this version reads


class CheckpointError(RuntimeError):
    """A file that is not a loadable narspeech checkpoint; the message names the file."""


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then rename: a kill leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _weights_only_reason(e: Exception) -> str:
    """What PyTorch's weights_only loader refused (e.g. ``posix.system``), without its advice to turn the check off."""
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return m.group(1) if m else "objects other than data and tensors"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True``: a file carrying pickled code (callables, classes) is refused.

    Every failure is a :class:`CheckpointError` that names the file and says what it is (missing, a directory, not a
    PyTorch file or truncated, holding code, a PyTorch file of something else); loading code is never suggested.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{path}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a narspeech model file")
    try:
        is_zip = zipfile.is_zipfile(p)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    if not is_zip:  # torch.save writes a zip archive; anything else would go to PyTorch's legacy unpickler
        raise CheckpointError(f"not a narspeech model file: {path} (not a PyTorch archive: truncated, corrupt, "
                              "or another format)")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"not a narspeech model file: {path} holds Python code ({_weights_only_reason(e)}), which narspeech never "
            "loads (weights_only=True); narspeech files hold only plain data and tensors"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"not a narspeech model file: {path} (corrupt PyTorch archive: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in FORMATS:
        what = f"format {ckpt.get('format')!r}" if isinstance(ckpt, dict) and "format" in ckpt else "no format tag"
        raise CheckpointError(f"not a narspeech model file: {path} (a PyTorch file with {what}; expected one written "
                              f"by narspeech train, format {' or '.join(map(repr, FORMATS))})")
    if ckpt["format"] == "narspeech-1" and "tokenizer" in ckpt:  # before tasks: ASR, the tokenizer at the top
        ckpt = {**ckpt, "task": "asr", "task_state": {"tokenizer": ckpt["tokenizer"]}}
    missing = [k for k in ("config", "task_state", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: narspeech file without {', '.join(missing)} (not a complete model file)")
    return ckpt


def build_model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "<checkpoint>"):
    """(model, task, experiment config) from a loaded checkpoint dict; the model is in eval mode.

    A file whose config, task state or weights do not fit this version of narspeech is a :class:`CheckpointError`."""
    from narspeech.config import config_from_dict
    from narspeech.registry import MODELS, TASKS

    try:
        cfg = config_from_dict(ckpt["config"])
        task = TASKS.get(cfg.task).from_state(cfg.data, ckpt["task_state"])
        model = MODELS.get(cfg.model.name).from_config(cfg.model.conf, **task.model_args())
        model.load_inference_state_dict(ckpt["model"])
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot build the model it describes: {first}") from None
    model.eval()
    return model, task, cfg


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a model file of any task; returns ``(model, task, config)`` (``task.tokenizer`` for ASR)."""
    model, task, cfg = build_model_from_checkpoint(load_checkpoint(path, "cpu"), path)
    return model.to(map_location), task, cfg


def average_state_dicts(paths: Sequence[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` weights of several checkpoints (integer buffers from the last one)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = load_checkpoint(p)["model"]
        for k, v in sd.items():
            if not v.is_floating_point():
                avg[k] = v.clone()
            elif k in avg:
                avg[k] += v.double()
            else:
                avg[k] = v.double().clone()
    # sd is the last checkpoint's: its dtypes are the ones restored
    return {k: (v / len(paths)).to(sd[k].dtype) if sd[k].is_floating_point() else v for k, v in avg.items()}


_EPOCH_RE = re.compile(r"^epoch(\d+)\.pt$")


def epoch_checkpoints(exp_dir: str | os.PathLike) -> list[Path]:
    """``epoch<N>.pt`` files of an experiment, sorted by N."""
    found = [(int(m.group(1)), p) for p in Path(exp_dir).glob("epoch*.pt") if (m := _EPOCH_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def export_model(ckpt: dict, model_state: dict[str, torch.Tensor], path: str | os.PathLike, **extra: Any) -> None:
    """Write a self-contained model file: config, task state, (averaged) weights, no optimizer state."""
    out = {k: ckpt[k] for k in ("config", "task", "task_state")}
    out["format"] = FORMAT
    out["model"] = model_state
    out.update(extra)
    save_atomic(out, path)
