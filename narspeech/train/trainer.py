"""The one training loop for every task: named loss terms, warmup schedule, clipping, accumulation, AMP, DDP,
validation, TensorBoard, atomic checkpoints with exact resume, NaN/Inf guard, and the final averaged ``model.pt``.

The trainer knows no family: the task (:mod:`narspeech.tasks`) gives datasets, batches and the validation metric;
the model gives its loss terms and, for a GAN, its parameter groups, each stepped by its own optimizer in order
(discriminator, then generator) on every batch.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from narspeech.base import MAIN_GROUP, Model
from narspeech.config import SCHEDULERS, ConfigError, ExperimentConfig, OptimConfig, to_dict
from narspeech.data.kaldi import DataDirError
from narspeech.data.sampler import BucketBatchSampler
from narspeech.registry import MODELS, TASKS
from narspeech.tasks.base import Task, TaskDataset
from narspeech.train import checkpoint as ckpt_lib
from narspeech.train.distributed import all_reduce_min, barrier, init_distributed
from narspeech.train.loss import total_loss

log = logging.getLogger(__name__)
# unusable utterances named one by one in the log before the rest are only counted
MAX_LISTED_PROBLEMS = 10


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _where(group: str) -> str:
    return "optim" if group == MAIN_GROUP else f"optim.groups.{group} (or optim)"


def build_optimizer(o: OptimConfig, params: list, group: str = MAIN_GROUP) -> torch.optim.Optimizer:
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(o.name)
    if opt_cls is None:
        raise ConfigError(f"{_where(group)}.name: unknown optimizer {o.name!r}; valid: adam, adamw")
    if len(o.betas) != 2:
        raise ConfigError(f"{_where(group)}.betas: expected two numbers, got {o.betas}")
    return opt_cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def lr_lambda(o: OptimConfig, group: str = MAIN_GROUP):
    """The lr factor by optimizer step: a linear warmup to the peak lr, then the configured decay: "noam" as
    Vaswani et al. (2017) / ESPnet's WarmupLR (1/sqrt(step)), "exponential" (``lr_decay`` per step, HiFi-GAN's
    ExponentialLR) or "constant"."""
    if o.scheduler not in SCHEDULERS:
        raise ConfigError(f"{_where(group)}.scheduler: unknown {o.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    w, kind, gamma = max(1, o.warmup_steps), o.scheduler, o.lr_decay

    def f(step: int) -> float:
        s = step + 1
        if s < w:
            return s / w
        if kind == "noam":
            return math.sqrt(w / s)
        if kind == "exponential":
            return gamma ** (s - w)
        return 1.0

    return f


def build_model(cfg: ExperimentConfig, task: Task) -> Model:
    """The registered model built with what the task gives it, then initialised from the data (statistics)."""
    model = MODELS.get(cfg.model.name).from_config(cfg.model.conf, **task.model_args())
    task.init_model(model)
    return model


def _rng_state(device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


class Trainer:
    """Trains ``cfg`` into ``exp_dir``; ``resume`` continues from ``exp_dir/last.pt`` when it exists."""

    def __init__(self, cfg: ExperimentConfig, exp_dir: str | Path, resume: bool = True) -> None:
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        self.dist, self.device = init_distributed(cfg.train.device)
        self.resume = resume
        set_seed(cfg.train.seed + self.dist.rank)
        self.task = TASKS.get(cfg.task).create(cfg.data)
        self.model = build_model(cfg, self.task).to(self.device)
        self.groups = self.model.optim_groups()
        self.multi = list(self.groups) != [MAIN_GROUP]
        if self.multi and cfg.optim.accum_grad != 1:
            # one group's backward also reaches the others' parameters (the generator's loss goes through the
            # discriminator), so gradients can only be kept for the group being stepped
            raise ConfigError(f"optim.accum_grad must be 1 for a model with several parameter groups "
                              f"({', '.join(self.groups)}), got {cfg.optim.accum_grad}")
        # several groups: each forward uses only some parameters (the discriminator step never the generator's)
        self.ddp_model = DDP(self.model, find_unused_parameters=self.multi) if self.dist.enabled else self.model
        unknown = sorted(set(cfg.optim.groups) - set(self.groups))
        if unknown:
            raise ConfigError(f"optim.groups: {', '.join(unknown)} is not a parameter group of model "
                              f"{cfg.model.name!r} (its groups: {', '.join(self.groups)})")
        self.optim_cfgs = {g: cfg.optim.for_group(g) for g in self.groups}
        self.optimizers = {g: build_optimizer(self.optim_cfgs[g], ps, g) for g, ps in self.groups.items()}
        self.schedulers = {g: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.optim_cfgs[g], g))
                           for g, opt in self.optimizers.items()}
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.scalers = {g: torch.amp.GradScaler("cuda", enabled=self.use_amp) for g in self.groups}
        self.step = 0
        self.epoch = 1
        self.batch_in_epoch = 0
        self.history: list[dict] = []  # one entry per finished epoch
        self.bad_steps = 0
        self.writer = None
        self._start: float | None = None  # time.monotonic() the time budget counts from (earlier runs included)
        self._resumed_elapsed: float | None = None  # seconds used before this run, from last.pt

    @property
    def tokenizer(self):
        """The task's tokenizer (ASR and text tasks)."""
        return self.task.tokenizer

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of a model with one parameter group."""
        return self.optimizers[MAIN_GROUP]

    def _elapsed(self) -> float:
        """Wall-clock seconds this experiment has trained, over every run of it (the budget's measure)."""
        return 0.0 if self._start is None else time.monotonic() - self._start

    def _budget_spent(self) -> bool:
        t = self.cfg.train
        return t.max_minutes > 0 and self._elapsed() / 60 >= t.max_minutes

    # ---- data -------------------------------------------------------------------------------------------
    def _dataset(self, dirs: list[str], train: bool) -> TaskDataset:
        ds = self.task.dataset(dirs, train, self.cfg.train.seed)
        if ds.problems:
            log.warning("skipping %d of %d %s of %s that cannot be used:", len(ds.problems),
                        len(ds) + len(ds.problems), self.task.item_noun, " ".join(dirs))
            for key, why in ds.problems[:MAX_LISTED_PROBLEMS]:
                log.warning("  %s: %s", key, why)
            if len(ds.problems) > MAX_LISTED_PROBLEMS:
                log.warning("  ... and %d more", len(ds.problems) - MAX_LISTED_PROBLEMS)
        if len(ds) == 0:
            raise DataDirError(f"no usable {self.task.item_noun} in {' '.join(dirs)} (all {len(ds.problems)} skipped, see above)")
        return ds

    def _loader(self, ds: TaskDataset, sampler: BucketBatchSampler) -> DataLoader:
        # A private generator keeps the DataLoader from drawing on the global RNG, which resume restores exactly.
        return DataLoader(
            ds, batch_sampler=sampler, collate_fn=self.task.collate, num_workers=self.cfg.data.num_workers,
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    # ---- checkpoints ------------------------------------------------------------------------------------
    def _ckpt(self, full: bool) -> dict:
        c = {
            "format": ckpt_lib.FORMAT,
            "config": to_dict(self.cfg),
            "task": self.cfg.task,
            "task_state": self.task.state(),
            "model": self.model.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "history": list(self.history),
            "elapsed": self._elapsed(),
        }
        if full:
            c.update(
                optimizers={g: o.state_dict() for g, o in self.optimizers.items()},
                schedulers={g: s.state_dict() for g, s in self.schedulers.items()},
                scalers={g: s.state_dict() for g, s in self.scalers.items()},
                rng=_rng_state(self.device),
            )
        return c

    def _save_last(self) -> None:
        if self.dist.is_main:
            ckpt_lib.save_atomic(self._ckpt(full=True), self.exp_dir / "last.pt")

    def _init_from(self, path: str) -> None:
        """Start from the weights of the model file ``path`` (``train.init_from``): every parameter and buffer it
        has with the same name and shape; one with another shape is an error naming it, and the names it lacks (new
        options) or has beyond this model are logged."""
        src = ckpt_lib.load_checkpoint(path, "cpu")["model"]
        own = self.model.state_dict()
        bad = [f"{k} {tuple(v.shape)} (this model: {tuple(own[k].shape)})" for k, v in src.items()
               if k in own and v.shape != own[k].shape]
        if bad:
            raise ConfigError(f"train.init_from {path}: shapes differ from this model's: {'; '.join(bad)}")
        # the whole dict, not only the names in ``own``: a model's load pre-hooks may rename old keys
        result = self.model.load_state_dict(src, strict=False)
        missing, extra = sorted(result.missing_keys), sorted(result.unexpected_keys)
        if len(missing) == len(own):
            raise ConfigError(f"train.init_from {path}: no parameter in common with this model ({self.cfg.model.name})")
        if missing and callable(getattr(self.model, "init_missing", None)):
            self.model.init_missing(missing)  # a model may start what the file lacked otherwise (e.g. at zero)
        log.info("initialised %d of %d tensors from %s%s%s", len(own) - len(missing), len(own), path,
                 f"; not in it (left as initialised): {', '.join(missing)}" if missing else "",
                 f"; in it but not in this model (ignored): {', '.join(extra)}" if extra else "")

    def _try_resume(self) -> None:
        path = self.exp_dir / "last.pt"
        if not (self.resume and path.exists()):
            if self.cfg.train.init_from:
                self._init_from(self.cfg.train.init_from)
            return
        c = ckpt_lib.load_checkpoint(path, "cpu")
        self.model.load_state_dict(c["model"])
        # checkpoints from before parameter groups hold one optimizer, scheduler and scaler
        opts = c.get("optimizers") or {MAIN_GROUP: c["optimizer"]}
        scheds = c.get("schedulers") or {MAIN_GROUP: c["scheduler"]}
        scalers = c.get("scalers") or {MAIN_GROUP: c["scaler"]}
        if set(opts) != set(self.optimizers):
            raise ConfigError(f"{path}: optimizer groups {sorted(opts)} differ from this model's {sorted(self.optimizers)}")
        for g in self.optimizers:
            self.optimizers[g].load_state_dict(opts[g])
            self.schedulers[g].load_state_dict(scheds[g])
            self.scalers[g].load_state_dict(scalers[g])
        self.step, self.epoch, self.batch_in_epoch = c["step"], c["epoch"], c["batch_in_epoch"]
        self.history = list(c["history"])
        self._resumed_elapsed = c.get("elapsed")
        _set_rng_state(c["rng"], self.device)
        log.info("resumed from %s: epoch %d, batch %d, step %d", path, self.epoch, self.batch_in_epoch, self.step)

    def _prune_epochs(self) -> None:
        t = self.cfg.train
        files = ckpt_lib.epoch_checkpoints(self.exp_dir)
        keep = {p.name for p in files[-t.keep_last :]} if t.keep_last > 0 else set()
        keep |= {f"epoch{h['epoch']}.pt" for h in self._best_epochs(t.average_best)}
        for p in files:
            if p.name not in keep:
                p.unlink(missing_ok=True)

    def _best_epochs(self, n: int) -> list[dict]:
        metric = self.task.metric
        key = metric if metric and all(metric in h for h in self.history) else "valid_loss"
        # ties (e.g. several epochs at CER 0 on a tiny set) go to the lower validation loss, i.e. usually the later epoch
        return sorted(self.history, key=lambda h: (h[key], h.get("valid_loss", 0.0)))[: max(1, n)]

    def export(self) -> Path:
        """Write ``model.pt``: the average of the best ``average_best`` epochs (by the task's metric, else loss),
        without the training-only submodules (discriminators)."""
        best = self._best_epochs(self.cfg.train.average_best)
        paths = [self.exp_dir / f"epoch{h['epoch']}.pt" for h in sorted(best, key=lambda h: h["epoch"])]
        paths = [p for p in paths if p.exists()]
        if not paths:
            raise FileNotFoundError(f"{self.exp_dir}: no epoch checkpoints to export")
        state = ckpt_lib.average_state_dicts(paths)
        drop = tuple(f"{name}." for name in self.model.training_only)
        state = {k: v for k, v in state.items() if not k.startswith(drop)}
        out = self.exp_dir / "model.pt"
        ckpt_lib.export_model(self._ckpt(full=False), state, out, averaged=[p.name for p in paths])
        log.info("wrote %s (average of %s)", out, ", ".join(p.name for p in paths))
        return out

    # ---- one step ---------------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _autocast(self):
        if not self.use_amp:
            return nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _forward(self, batch: dict, group: str, cache: dict) -> dict:
        return self.ddp_model(batch) if not self.multi else self.ddp_model(batch, group=group, cache=cache)

    def train_batch(self, batch: dict, sync: bool = True) -> dict[str, float] | None:
        """Forward/backward of one batch for a one-group model (gradients accumulate); None when the loss was not
        finite on any rank."""
        batch = self._to_device(batch)
        ctx = self.ddp_model.no_sync() if (self.dist.enabled and not sync) else nullcontext()
        with ctx:
            with self._autocast():
                terms = self._forward(batch, MAIN_GROUP, {})
                loss = total_loss(terms)
            finite = all_reduce_min(float(torch.isfinite(loss).item()), self.dist, self.device)
            if finite < 1.0:
                return None
            self.scalers[MAIN_GROUP].scale(loss / self.cfg.optim.accum_grad).backward()
        return {"loss": float(loss.detach()), **{k: float(t.value.detach()) for k, t in terms.items()}}

    def optimizer_step(self, group: str = MAIN_GROUP) -> float:
        """Clip, step, zero one group; returns its gradient norm before clipping."""
        scaler, opt = self.scalers[group], self.optimizers[group]
        scaler.unscale_(opt)
        clip = self.optim_cfgs[group].grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.groups[group], clip if clip > 0 else float("inf"))
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        self.schedulers[group].step()
        return float(norm)

    def train_groups(self, batch: dict) -> tuple[dict[str, float], dict[str, float]] | None:
        """One optimizer step of each active group in order on ``batch`` (a GAN: discriminator, then generator):
        zero every gradient, forward the group's losses, backward, clip and step that group only. Returns (loss
        terms by name, gradient norm by group), or None when a group's loss was not finite (its step is skipped
        and the later groups' too)."""
        batch = self._to_device(batch)
        cache: dict = {}
        stats: dict[str, float] = {}
        norms: dict[str, float] = {}
        active = [g for g in self.model.active_groups(self.step) if self.step >= self.optim_cfgs[g].start_step]
        cache["groups"] = active  # the generator leaves out its adversarial terms while the discriminator waits
        for group in active:
            self.model.zero_grad(set_to_none=True)
            with self._autocast():
                terms = self._forward(batch, group, cache)
                loss = total_loss(terms)
            if all_reduce_min(float(torch.isfinite(loss).item()), self.dist, self.device) < 1.0:
                self.model.zero_grad(set_to_none=True)
                return None
            self.scalers[group].scale(loss).backward()
            norms[group] = self.optimizer_step(group)
            stats[f"loss_{group}"] = float(loss.detach())
            stats.update({k: float(t.value.detach()) for k, t in terms.items()})
        self.model.zero_grad(set_to_none=True)
        stats["loss"] = stats.get(f"loss_{list(self.groups)[-1]}", 0.0)
        return stats, norms

    # ---- validation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """``valid_loss`` (per item; for several groups the last group's, e.g. the generator's) and the task's
        metrics from the model's inference."""
        self.model.eval()
        tot, n = 0.0, 0
        last = list(self.groups)[-1]
        batches = []
        for batch in loader:
            if batch is None:  # every item of it failed to load (named in the log)
                continue
            batch = self._to_device(batch)
            b = len(batch["utt_ids"])
            tot += float(total_loss(self._forward(batch, last, {}) if self.multi else self.model(batch))) * b
            n += b
            batches.append(batch)
        out = {"valid_loss": tot / max(1, n), **self.task.evaluate(self.model, batches)}
        self.model.train()
        return out

    # ---- the loop ---------------------------------------------------------------------------------------
    def fit(self) -> Path | None:
        """Train until ``max_epochs`` or the time budget; returns the exported model path on rank 0.

        The budget (``train.max_minutes``) is checked after every optimizer step: past it, the epoch is closed
        early (validated, ``epoch<N>.pt`` written, marked partial in the history) and ``last.pt`` keeps the exact
        position, so a later run with a larger budget or more epochs continues the same epoch."""
        from narspeech.progress import logs_above_bars

        t = self.cfg.train
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            (self.exp_dir / "config.yaml").write_text(_yaml(to_dict(self.cfg)))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.exp_dir / "tensorboard"))
        self._try_resume()
        train_ds = self._dataset(self.cfg.data.train, train=True)
        valid_ds = self._dataset(self.cfg.data.valid, train=False)
        cap = self.task.max_batch
        sampler = BucketBatchSampler(train_ds.lengths, cap, True, t.seed, self.dist.world_size, self.dist.rank)
        valid_loader = self._loader(valid_ds, BucketBatchSampler(valid_ds.lengths, cap, False))
        log.info("task %s: %d train / %d valid %s, %.2fM parameters, groups %s, device %s, world size %d",
                 self.cfg.task, len(train_ds), len(valid_ds), self.task.item_noun,
                 sum(p.numel() for p in self.model.parameters()) / 1e6,
                 "+".join(self.groups), self.device, self.dist.world_size)
        # the time budget counts wall-clock time (validation included) over every run of this experiment, so that
        # running a finished command again only re-exports (older checkpoints: from the history)
        used = self._resumed_elapsed
        if used is None and self.history:
            used = self.history[-1].get("elapsed", sum(h.get("seconds", 0.0) for h in self.history))
        used = used or 0.0
        self._start = time.monotonic() - used
        self.model.train()
        if self._budget_spent():
            log.info("time budget of %.1f min already used (%.1f min over %d epochs): nothing left to train",
                     t.max_minutes, used / 60, len(self.history))
        stop = self._budget_spent()
        with logs_above_bars():
            while self.epoch <= t.max_epochs and not stop:
                stop = self._train_epoch(train_ds, sampler, valid_loader)
        out = self.export() if self.dist.is_main else None
        barrier(self.dist)
        if self.writer is not None:
            self.writer.close()
        return out

    def _train_epoch(self, train_ds: TaskDataset, sampler: BucketBatchSampler, valid_loader: DataLoader) -> bool:
        """Train the current epoch from ``batch_in_epoch`` on, then close it (:meth:`_end_epoch`); True when the
        time budget is spent (the epoch then closes early when it stopped before its last batch)."""
        from narspeech.progress import progress

        t = self.cfg.train
        accum = self.cfg.optim.accum_grad
        train_ds.set_epoch(self.epoch)
        sampler.set_epoch(self.epoch, self.batch_in_epoch)
        epoch_start = time.monotonic()
        epoch_batches = self.batch_in_epoch + len(sampler)
        sums: dict[str, float] = {}
        nb = 0
        stop = False
        bar = progress(self._loader(train_ds, sampler), desc=f"epoch {self.epoch}/{t.max_epochs}", unit="batch",
                       enabled=self.dist.is_main)
        for batch in bar:
            self.batch_in_epoch += 1
            if batch is None:  # every item of it failed to load (named in the log)
                continue
            if self.multi:
                out = self.train_groups(batch)
                stats, norms = out if out is not None else (None, {})
            else:
                stats = self.train_batch(batch, sync=self.batch_in_epoch % accum == 0)
            if stats is None:
                self.bad_steps += 1
                for opt in self.optimizers.values():
                    opt.zero_grad(set_to_none=True)
                log.warning("non-finite loss at epoch %d batch %d (%s); batch skipped", self.epoch,
                            self.batch_in_epoch, ",".join(batch["utt_ids"][:3]))
                if self.bad_steps > t.max_bad_steps:
                    raise RuntimeError(f"{self.bad_steps} consecutive non-finite losses; lower the lr or check data")
                continue
            self.bad_steps = 0
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            nb += 1
            if self.batch_in_epoch % accum != 0:
                continue
            if not self.multi:
                norms = {MAIN_GROUP: self.optimizer_step()}
            self.step += 1
            if self.writer is not None and self.step % t.log_interval == 0:
                for k, v in stats.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
                for g, norm in norms.items():
                    suffix = "" if g == MAIN_GROUP else f"_{g}"
                    self.writer.add_scalar(f"train/lr{suffix}", self.schedulers[g].get_last_lr()[0], self.step)
                    self.writer.add_scalar(f"train/grad_norm{suffix}", norm, self.step)
                eta = _eta(time.monotonic() - epoch_start, nb, epoch_batches - self.batch_in_epoch)
                log.info("epoch %d batch %d/%d (epoch ETA %s) step %d: %s lr %.2e", self.epoch, self.batch_in_epoch,
                         epoch_batches, eta, self.step, " ".join(f"{k} {v:.3f}" for k, v in stats.items()),
                         next(iter(self.schedulers.values())).get_last_lr()[0])
            bar.set_postfix(loss=f"{stats['loss']:.3f}", step=self.step)
            if t.save_interval_steps and self.step % t.save_interval_steps == 0:
                self._save_last()
            if t.max_minutes > 0 and all_reduce_min(float(self._budget_spent()), self.dist, self.device) == 1.0:
                stop = True
                break
        bar.close()
        partial = stop and self.batch_in_epoch < epoch_batches
        if partial:
            log.info("time budget of %.1f min reached at epoch %d batch %d/%d: closing the epoch early (resumable)",
                     t.max_minutes, self.epoch, self.batch_in_epoch, epoch_batches)
        self._end_epoch(valid_loader, {k: v / max(1, nb) for k, v in sums.items()}, time.monotonic() - epoch_start,
                        partial=partial, epoch_batches=epoch_batches)
        if not stop and t.max_minutes > 0:
            stop = all_reduce_min(float(self._budget_spent()), self.dist, self.device) == 1.0
            if stop and self.epoch <= t.max_epochs:
                log.info("time budget of %.1f min reached after epoch %d", t.max_minutes, self.epoch - 1)
        return stop

    def _end_epoch(self, valid_loader: DataLoader, train_stats: dict[str, float], seconds: float,
                   partial: bool = False, epoch_batches: int = 0) -> None:
        """Validate (rank 0), record the epoch, write ``epoch<N>.pt`` and ``last.pt``, prune old epochs.

        ``seconds``: the epoch's training time in this run. ``partial``: the time budget stopped the epoch after
        ``batch_in_epoch`` of its ``epoch_batches`` batches; its history entry says so, and ``last.pt`` keeps the
        position, so a resumed run finishes the epoch and replaces the entry."""
        if self.dist.is_main:
            metrics = self.validate(valid_loader)
            entry = {"epoch": self.epoch, "step": self.step, "seconds": seconds, "elapsed": self._elapsed(),
                     **{f"train_{k}": v for k, v in train_stats.items()}, **metrics}
            if partial:
                entry.update(partial=True, batches=self.batch_in_epoch, epoch_batches=epoch_batches)
            log.info("epoch %d %s: %s", self.epoch, f"stopped at batch {self.batch_in_epoch}/{epoch_batches}" if partial
                     else "done", " ".join(f"{k} {v:.4f}" for k, v in entry.items() if isinstance(v, float)))
            for k, v in metrics.items():
                self.writer.add_scalar(k.replace("_", "/", 1), v, self.epoch)
            self.history = [h for h in self.history if h["epoch"] != self.epoch] + [entry]
            ckpt_lib.save_atomic(self._ckpt(full=False), self.exp_dir / f"epoch{self.epoch}.pt")
        if not partial:
            self.epoch += 1
            self.batch_in_epoch = 0
        if self.dist.is_main:
            self._save_last()
            self._prune_epochs()
        barrier(self.dist)


def _eta(seconds: float, done: int, left: int) -> str:
    """``m:ss`` left at the pace so far (``?`` before the first batch)."""
    if done <= 0:
        return "?"
    rest = int(seconds / done * left)
    return f"{rest // 60}:{rest % 60:02d}"


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
