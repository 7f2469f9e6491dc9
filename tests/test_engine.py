"""The engine that serves every task: tasks and their config sections, two-optimizer (GAN) training, text-to-text
data and token batches, exact resume, model files of every task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import toy_tasks  # noqa: F401 - registers the toy_1d task and the toy_gan model
from narspeech.config import ConfigError, config_from_dict, load_config
from narspeech.data.kaldi import write_kv
from narspeech import load_model  # the public entry point, any family
from narspeech.train.checkpoint import load_checkpoint
from narspeech.train.trainer import Trainer

TESTS = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------- config
def test_each_task_types_its_own_data_section():
    t2t = load_config(None, ["task=text2text"])
    assert t2t.task == "text2text" and t2t.model.name == "ctc_nat" and t2t.data.max_tokens == 4000
    asr = load_config(None)
    assert asr.task == "asr" and asr.data.max_frames == 12000
    with pytest.raises(ConfigError, match=r"unknown config key 'data.max_frames'; valid: .*max_tokens"):
        load_config(None, ["task=text2text", "data.max_frames=100"])
    with pytest.raises(ConfigError, match=r"data.max_tokens: expected int"):
        load_config(None, ["task=text2text", "data.max_tokens=many"])
    with pytest.raises(ConfigError, match=r"task: unknown task 'tts2'; valid: .*asr"):
        load_config(None, ["task=tts2"])


# ---------------------------------------------------------------------------------------------------- text to text
def make_text_dirs(root: Path, n_train: int = 64, n_valid: int = 8, reverse: bool = False) -> dict[str, Path]:
    """Random 3-7 letter 'sentences' over 6 letters; the target is the source copied (or reversed)."""
    g = torch.Generator().manual_seed(0)
    letters = "abcdef"
    out = {}
    for name, n in (("train", n_train), ("valid", n_valid)):
        src, tgt = {}, {}
        for i in range(n):
            k = int(torch.randint(3, 8, (1,), generator=g))
            s = "".join(letters[int(j)] for j in torch.randint(0, len(letters), (k,), generator=g))
            src[f"{name}{i:03d}"] = " ".join(s)
            tgt[f"{name}{i:03d}"] = " ".join(s[::-1] if reverse else s)
        d = root / name
        d.mkdir(parents=True)
        write_kv(d / "text.src", src)
        write_kv(d / "text", tgt)
        out[name] = d
    return out


def text_config(root: Path, dirs: dict[str, Path], **train) -> dict:
    from narspeech.bin import tokens

    assert tokens.main(["--data", str(dirs["train"]), "--files", "text", "text.src", "--out", str(root / "tok")]) == 0
    return {
        "task": "text2text",
        "model": {"name": "ctc_nat", "conf": {"encoder": {"block": "transformer", "d_model": 48, "num_heads": 2,
                                                          "ffn_dim": 96, "num_layers": 2, "dropout": 0.0,
                                                          "subsampling_factor": 1}, "upsample": 2}},
        "data": {"train": [str(dirs["train"])], "valid": [str(dirs["train"])], "tokenizer": str(root / "tok"),
                 "max_tokens": 80},
        "optim": {"lr": 0.003, "warmup_steps": 30},
        "train": {"max_epochs": 25, "keep_last": 2, "average_best": 1, "log_interval": 1000, "seed": 0, **train},
    }


def test_ctc_nat_learns_to_copy_text_on_the_shared_trainer(tmp_path):
    """The text-to-text task on the one trainer: token batches, WER validation, a model file that decodes."""
    dirs = make_text_dirs(tmp_path)
    cfg = text_config(tmp_path, dirs)
    out = Trainer(config_from_dict(cfg), tmp_path / "exp", resume=False).fit()
    hist = load_checkpoint(tmp_path / "exp" / "last.pt")["history"]
    assert hist[0]["valid_wer"] > 0.5 and hist[-1]["valid_wer"] == 0.0, [h["valid_wer"] for h in hist]
    model, task, cfg_loaded = load_model(out)
    assert cfg_loaded.task == "text2text" and task.tokenizer.token_list == task.src_tokenizer.token_list
    from narspeech.tasks.text2text import collate_text

    ds = task.dataset([str(dirs["train"])], train=False, seed=0)
    batch = collate_text([ds[i] for i in range(4)])
    hyps = [task.tokenizer.decode(h) for h in model.infer(batch["src"], batch["src_lens"])]
    refs = [task.tokenizer.decode(t[t >= 0].tolist()) for t in batch["tokens"]]
    assert hyps == refs


def test_token_batches_respect_max_tokens(tmp_path):
    from narspeech.data.sampler import BucketBatchSampler
    from narspeech.registry import TASKS

    dirs = make_text_dirs(tmp_path, n_train=50)
    cfg = config_from_dict(text_config(tmp_path, dirs))
    task = TASKS.get("text2text").create(cfg.data)
    ds = task.dataset(cfg.data.train, train=True, seed=0)
    batches = list(BucketBatchSampler(ds.lengths, task.max_batch, True, 0))
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    for b in batches:
        batch = task.collate([ds[i] for i in b])
        assert max(batch["src"].numel(), batch["tokens"].numel()) <= task.max_batch


def test_text_dirs_are_validated_naming_file_and_key(tmp_path, capsys):
    from narspeech.bin import validate

    dirs = make_text_dirs(tmp_path, n_train=4, n_valid=1)
    assert validate.main([str(dirs["train"])]) == 0
    with open(dirs["train"] / "text.src", "a") as f:
        f.write("zz_extra a b\n")
    assert validate.main([str(dirs["train"])]) == 1
    err = capsys.readouterr().err
    assert "text.src: key 'zz_extra' has no target" in err


# --------------------------------------------------------------------------------------------------------- GAN
def gan_config(**train) -> dict:
    return {"task": "toy_1d", "model": {"name": "toy_gan", "conf": {"hidden": 32}},
            "data": {"num_samples": 512, "batch_size": 32},
            "optim": {"lr": 0.003, "warmup_steps": 1, "scheduler": "constant", "betas": [0.5, 0.9], "weight_decay": 0.0,
                      "groups": {"discriminator": {"lr": 0.001}}},
            "train": {"max_epochs": 40, "keep_last": 2, "average_best": 1, "log_interval": 1000, "seed": 0, **train}}


def test_gan_steps_discriminator_then_generator_and_learns_the_distribution(tmp_path):
    tr = Trainer(config_from_dict(gan_config()), tmp_path / "exp", resume=False)
    # optim.groups overrides one group's keys; the rest come from the optim section
    assert tr.optimizers["discriminator"].param_groups[0]["lr"] == 0.001
    assert tr.optimizers["generator"].param_groups[0]["lr"] == 0.003
    assert tr.optimizers["discriminator"].param_groups[0]["betas"] == (0.5, 0.9)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    batch = tr.task.collate([tr.task.dataset(["toy"], True, 0)[i] for i in range(32)])
    tr.model.active_groups = lambda step: ["discriminator"]  # one group's step changes only its parameters
    tr.train_groups(batch)
    after_d = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert all(torch.equal(before[k], after_d[k]) for k in before if k.startswith("generator."))
    assert any(not torch.equal(before[k], after_d[k]) for k in before if k.startswith("discriminator."))
    tr.model.active_groups = lambda step: ["generator"]
    tr.train_groups(batch)
    after_g = tr.model.state_dict()
    assert all(torch.equal(after_d[k], after_g[k]) for k in before if k.startswith("discriminator."))
    assert any(not torch.equal(after_d[k], after_g[k]) for k in before if k.startswith("generator."))
    del tr.model.active_groups

    tr = Trainer(config_from_dict(gan_config()), tmp_path / "exp2", resume=False)
    out = tr.fit()
    hist = load_checkpoint(tmp_path / "exp2" / "last.pt")["history"]
    assert {"d_adv", "g_adv"} <= {k[len("train_"):] for k in hist[-1]}  # every term logged by name
    model, _, _ = load_model(out)
    s = model.sample(4000, torch.Generator().manual_seed(1))
    assert abs(float(s.mean()) - 3.0) < 0.25 and abs(float(s.std()) - 0.5) < 0.25, (float(s.mean()), float(s.std()))
    assert hist[-1]["valid_moment_err"] < hist[0]["valid_moment_err"]
    # the model file keeps the generator only; the checkpoint keeps both optimizers
    assert not any(k.startswith("discriminator.") for k in load_checkpoint(out)["model"])
    assert set(load_checkpoint(tmp_path / "exp2" / "last.pt")["optimizers"]) == {"discriminator", "generator"}


def test_optim_groups_and_schedulers_are_checked(tmp_path):
    from narspeech.train.trainer import lr_lambda
    from narspeech.config import OptimConfig

    cfg = gan_config()
    cfg["optim"]["groups"] = {"discrimnator": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="discrimnator is not a parameter group of model 'toy_gan'"):
        Trainer(config_from_dict(cfg), tmp_path / "a", resume=False)
    cfg["optim"]["groups"] = {"discriminator": {"lr": "fast"}}
    with pytest.raises(ConfigError, match="optim.groups.discriminator.lr"):
        config_from_dict(cfg)
    cfg["optim"]["groups"] = {"discriminator": {"scheduler": "cosine"}}
    with pytest.raises(ConfigError, match="optim.groups.discriminator .or optim..scheduler: unknown 'cosine'"):
        Trainer(config_from_dict(cfg), tmp_path / "b", resume=False)
    # warmup then the decay each scheduler names
    noam = lr_lambda(OptimConfig(scheduler="noam", warmup_steps=4))
    expo = lr_lambda(OptimConfig(scheduler="exponential", warmup_steps=4, lr_decay=0.5))
    const = lr_lambda(OptimConfig(scheduler="constant", warmup_steps=4))
    assert [noam(s) for s in (0, 3, 15)] == [0.25, 1.0, 0.5]
    assert [expo(s) for s in (0, 3, 4, 5)] == [0.25, 1.0, 0.5, 0.25]
    assert [const(s) for s in (1, 3, 1000)] == [0.5, 1.0, 1.0]


def test_a_group_waits_for_its_start_step(tmp_path):
    """Generator-only warm-up: the discriminator is not stepped before optim.groups.discriminator.start_step."""
    cfg = gan_config()
    cfg["optim"]["groups"]["discriminator"]["start_step"] = 3
    tr = Trainer(config_from_dict(cfg), tmp_path / "exp", resume=False)
    batch = tr.task.collate([tr.task.dataset(["toy"], True, 0)[i] for i in range(32)])
    d0 = {k: v.clone() for k, v in tr.model.state_dict().items() if k.startswith("discriminator.")}
    for step in range(3):
        tr.step = step
        stats, norms = tr.train_groups(batch)
        assert list(norms) == ["generator"] and "d_adv" not in stats
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in d0.items())
    tr.step = 3
    _, norms = tr.train_groups(batch)
    assert list(norms) == ["discriminator", "generator"]
    assert any(not torch.equal(v, tr.model.state_dict()[k]) for k, v in d0.items())


def test_a_non_finite_group_loss_skips_the_batch_without_touching_weights(tmp_path):
    """NaN guard per step: a non-finite discriminator loss skips that batch's steps of every group."""
    tr = Trainer(config_from_dict(gan_config()), tmp_path / "exp", resume=False)
    batch = tr.task.collate([tr.task.dataset(["toy"], True, 0)[i] for i in range(8)])
    batch["x"][3, 0] = float("nan")
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert tr.train_groups(batch) is None
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert all(p.grad is None for p in tr.model.parameters())
    batch["x"][3, 0] = 3.0
    assert tr.train_groups(batch) is not None


def test_several_groups_refuse_gradient_accumulation(tmp_path):
    cfg = gan_config()
    cfg["optim"]["accum_grad"] = 2
    with pytest.raises(ConfigError, match="accum_grad must be 1"):
        Trainer(config_from_dict(cfg), tmp_path / "exp", resume=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gan_step_weights(rank: int, world: int, port: int, exp: str, out: str) -> None:
    """One discriminator + generator step on this rank's half of a fixed batch (fixed noise); saves the weights."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from narspeech.train.distributed import cleanup

    tr = Trainer(config_from_dict(gan_config()), exp, resume=False)
    g = torch.Generator().manual_seed(0)
    x, z = 3.0 + 0.5 * torch.randn(8, 1, generator=g), torch.randn(8, toy_tasks.NOISE_DIM, generator=g)
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    assert tr.train_groups({"utt_ids": [], "x": x[part], "z": z[part]}) is not None
    torch.save(tr.model.state_dict(), out)
    cleanup(tr.dist)


def test_ddp_gan_steps_match_the_joint_batch(tmp_path):
    """DDP over 2 gloo processes, half a batch each, through the discriminator step and the generator step (which
    reuses the generator output of the discriminator's forward) gives the weights of one process on the whole batch."""
    import torch.multiprocessing as mp

    _gan_step_weights(0, 1, 0, str(tmp_path / "single"), str(tmp_path / "w1.pt"))
    mp.spawn(_gan_step_weights, args=(2, _free_port(), str(tmp_path / "ddp"), str(tmp_path / "w2.pt")), nprocs=2,
             join=True)
    w1, w2 = (torch.load(tmp_path / f, weights_only=True) for f in ("w1.pt", "w2.pt"))
    init = Trainer(config_from_dict(gan_config()), tmp_path / "init", resume=False).model.state_dict()
    for k in w1:
        assert not torch.equal(w1[k], init[k]), f"{k} was not stepped"
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-6, msg=f"{k} differs under DDP")


def test_torchrun_two_processes_train_a_gan(tmp_path):
    """The real launcher on a GAN: `torchrun --nproc_per_node 2` runs both groups' steps, logs both terms, keeps both
    optimizers in last.pt and exports the generator only."""
    port = _free_port()
    cfg = tmp_path / "gan.yaml"
    cfg.write_text(yaml.safe_dump(gan_config(max_epochs=4)))
    exp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(TESTS / "toy_tasks.py"), "train", "--config", str(cfg), "--exp-dir", str(exp)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world size 2" in (exp / "train.log").read_text()
    last = load_checkpoint(exp / "last.pt")
    assert len(last["history"]) == 4 and {"train_d_adv", "train_g_adv"} <= set(last["history"][-1])
    assert set(last["optimizers"]) == {"discriminator", "generator"}
    assert not any(k.startswith("discriminator.") for k in load_checkpoint(exp / "model.pt")["model"])


# ------------------------------------------------------------------------------------------- kill and resume
def _kill_and_resume(cmd: list[str], exp: Path, ref: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([*cmd, "--exp-dir", str(ref)], check=True, env=env, capture_output=True)
    proc = subprocess.Popen([*cmd, "--exp-dir", str(exp)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (exp / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(exp / "last.pt")
    final_ref = load_checkpoint(ref / "last.pt")
    assert 0 < killed_at["batch_in_epoch"] and killed_at["step"] < final_ref["step"]  # killed mid-epoch
    subprocess.run([*cmd, "--exp-dir", str(exp)], check=True, env=env, capture_output=True)
    resumed = load_checkpoint(exp / "last.pt")
    assert resumed["step"] == final_ref["step"]
    for k, v in final_ref["model"].items():
        assert torch.equal(v, resumed["model"][k]), f"{k} differs after resume"


def test_kill_and_resume_a_gan_run_gives_identical_weights(tmp_path):
    cfg = tmp_path / "gan.yaml"
    cfg.write_text(yaml.safe_dump(gan_config(max_epochs=3, save_interval_steps=5, keep_last=3)))
    cmd = [sys.executable, str(TESTS / "toy_tasks.py"), "train", "--config", str(cfg)]
    _kill_and_resume(cmd, tmp_path / "killed", tmp_path / "ref")


def test_kill_and_resume_a_text_to_text_run_gives_identical_weights(tmp_path):
    dirs = make_text_dirs(tmp_path, n_train=32)
    cfg = tmp_path / "t2t.yaml"
    cfg.write_text(yaml.safe_dump(text_config(tmp_path, dirs, max_epochs=3, save_interval_steps=3, keep_last=3)))
    cmd = [sys.executable, "-m", "narspeech.cli", "train", "--config", str(cfg)]
    _kill_and_resume(cmd, tmp_path / "killed", tmp_path / "ref")


# ------------------------------------------------------------------------------------------------------ bench core
def test_bench_core_times_a_tiny_model(tmp_path):
    import json

    from narspeech.bench import core

    devices = core.setup(threads=1, gpu=False)
    assert devices == [torch.device("cpu")] and torch.get_num_threads() == 1
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 8)).eval()
    xs = [torch.randn(1, 64) for _ in range(20)]
    with torch.inference_mode():
        out, ms = core.fastest(lambda: model(xs[0]), devices[0], repeats=3)
        assert out.shape == (1, 8) and ms > 0
        lats = [core.fastest(lambda: model(x), devices[0], 2)[1] for x in xs]
        rate = core.throughput(lambda idx: model(torch.cat([xs[i] for i in idx])), list(range(20)), 10, devices[0])
    assert rate > 0 and core.percentile(lats, 0.0) == min(lats) and core.percentile(lats, 1.0) == max(lats)
    assert core.speedups([10.0, 5.0, 20.0], reference=2) == [2.0, 4.0, 1.0]
    assert core.speedups([1.0], reference=None) == [None]
    meta = core.run_meta(1, 3, devices, data="x")
    out_dir = core.write_results(tmp_path / "b", meta, [{"system": "a", "lat": 1.0}], "| a |", "one row")
    res = json.loads((out_dir / "results.json").read_text())
    assert res["meta"]["threads"] == 1 and res["meta"]["gpu"] is None and res["rows"][0]["system"] == "a"
    assert (out_dir / "results.md").read_text() == "one row\n\n| a |\n"


# ------------------------------------------------------------------------------------------ dump and durations
def test_dump_is_resumable_atomic_and_names_unusable_audio(tone_setup, tmp_path, capsys):
    import numpy as np

    from narspeech.bin import dump
    from narspeech.data.dump import load_feature, read_feats_scp
    from narspeech.data.kaldi import read_data_dir

    data = tmp_path / "set"
    import shutil

    shutil.copytree(tone_setup["train"], data)
    (tmp_path / "bad.wav").write_bytes(b"RIFF junk")
    with open(data / "wav.scp", "a") as f:
        f.write(f"zz_bad {tmp_path / 'bad.wav'}\n")
    for name in ("text", "utt2spk"):
        with open(data / name, "a") as f:
            f.write("zz_bad x\n" if name == "text" else "zz_bad spk\n")
    assert dump.main(["--data", str(data), "--out-dir", str(tmp_path / "dump"), "--kind", "fbank"]) == 1
    out, err = capsys.readouterr()
    assert "skipped zz_bad" in err and "8 of 9 utterances (1 skipped)" in out
    index = read_feats_scp(tmp_path / "dump/set/feats.scp")
    utts = {u.utt_id: u for u in read_data_dir(data)}
    from narspeech.asr.transcribe import utterance_features

    first = sorted(index)[0]
    assert np.allclose(load_feature(index[first]), utterance_features(utts[first]).numpy())
    # resumable: a file already there is kept (not recomputed); a half-written temp file is ignored
    stamp = Path(index[first]).stat().st_mtime_ns
    (Path(index[first]).parent / ".x.npy.123.tmp").write_bytes(b"half")
    assert dump.main(["--data", str(data), "--out-dir", str(tmp_path / "dump"), "--kind", "fbank"]) == 1
    assert Path(index[first]).stat().st_mtime_ns == stamp and read_feats_scp(tmp_path / "dump/set/feats.scp") == index
    # narspeech validate checks a dump dir: every indexed file a readable array, named by scp and utterance
    from narspeech.bin import validate

    assert validate.main([str(tmp_path / "dump/set")]) == 0
    Path(index[first]).write_bytes(b"not an array")
    assert validate.main([str(tmp_path / "dump/set")]) == 1
    assert f"feats.scp: utterance {first!r}: " in capsys.readouterr().err


def test_durations_file_is_validated(tone_setup, tmp_path):
    import shutil

    from narspeech.data.kaldi import read_kv, validate_data_dir

    data = tmp_path / "set"
    shutil.copytree(tone_setup["train"], data)
    keys = sorted(read_kv(data / "text"))
    write_kv(data / "durations", {k: "3 0 12" for k in keys})
    assert validate_data_dir(data, check_audio=False) == []
    write_kv(data / "durations", {**{k: "3 0 12" for k in keys[1:]}, keys[2]: "3 -1"})
    problems = validate_data_dir(data, check_audio=False)
    assert any(f"{keys[2]!r}: durations must be non-negative integers" in p for p in problems)
    assert any(f"{keys[0]!r} has no durations" in p for p in problems)
