"""Learning, resume, DDP and checkpoint-safety tests of the training engine (CPU)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from narspeech.config import config_from_dict
from narspeech.train.checkpoint import CheckpointError, load_checkpoint
from narspeech.asr.task import load_asr_model

REPO = Path(__file__).resolve().parents[1]


def test_tiny_ctc_overfits_to_zero_cer(trained_tone_model, tone_setup):
    """A tiny CTC model learns a handful of generated utterances: training CER reaches 0."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate

    model, tok, _ = load_asr_model(trained_tone_model)
    utts = read_data_dir(tone_setup["train"])
    hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=3)}
    cer = char_error_rate([u.text for u in utts], [hyps[u.utt_id] for u in utts])
    assert cer.errors == 0, f"CER {cer}: {hyps}"
    hist = load_checkpoint(trained_tone_model.parent / "last.pt")["history"]
    assert hist[-1]["train_loss"] < 0.1 * hist[0]["train_loss"]


def _write_cfg(tone_setup, path: Path, **train) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["train"].update(train)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(cfg: Path, exp: Path) -> list[str]:
    return [sys.executable, "-m", "narspeech.cli", "train", "--config", str(cfg), "--exp-dir", str(exp)]


def test_kill_and_resume_gives_same_weights(tone_setup, tmp_path):
    """SIGKILL a run right after its first mid-epoch checkpoint, resume it, and compare with an uninterrupted run."""
    cfg = _write_cfg(tone_setup, tmp_path / "c.yaml", max_epochs=4, save_interval_steps=3, keep_last=4, average_best=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(cfg, ref), check=True, env=env, capture_output=True)

    exp = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(cfg, exp), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (exp / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(exp / "last.pt")
    final_ref = load_checkpoint(ref / "last.pt")
    assert killed_at["step"] < final_ref["step"]
    subprocess.run(_train_cmd(cfg, exp), check=True, env=env, capture_output=True)
    resumed = load_checkpoint(exp / "last.pt")
    assert resumed["step"] == final_ref["step"]
    for k, v in final_ref["model"].items():
        assert torch.equal(v, resumed["model"][k]), f"{k} differs after resume"


def test_a_run_stopped_by_its_time_budget_only_re_exports_when_run_again(tone_setup, tmp_path):
    """The budget counts wall-clock time over every run of the experiment (validation included) and is checked after
    every step: past it, the epoch is closed early (validated, exported, marked partial) and last.pt keeps the exact
    position. Running the same command again trains nothing and writes the same model; a larger budget finishes the
    epoch and goes on, to the same weights as a run that was never stopped."""
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["data"]["max_frames"] = 200  # several batches per epoch
    cfg["train"].update(max_epochs=2, max_minutes=0.0005, keep_last=5, average_best=1)  # 30 ms: one step
    exp = tmp_path / "budget"
    out = Trainer(config_from_dict(cfg), exp).fit()
    first = load_checkpoint(exp / "last.pt")
    (h,) = first["history"]
    assert h["partial"] and 1 <= h["batches"] < h["epoch_batches"] and h["elapsed"] >= h["seconds"]
    assert first["epoch"] == 1 and first["batch_in_epoch"] == h["batches"] and first["step"] == h["batches"]
    model = load_checkpoint(out)["model"]
    assert Trainer(config_from_dict(cfg), exp).fit() == out
    again = load_checkpoint(exp / "last.pt")
    assert again["step"] == first["step"] and again["history"] == first["history"]
    assert all(torch.equal(v, load_checkpoint(out)["model"][k]) for k, v in model.items())
    cfg["train"]["max_minutes"] = 60.0  # more budget: training goes on from where it stopped
    Trainer(config_from_dict(cfg), exp).fit()
    done = load_checkpoint(exp / "last.pt")
    assert [e["epoch"] for e in done["history"]] == [1, 2] and not any(e.get("partial") for e in done["history"])
    ref_cfg = yaml.safe_load(yaml.safe_dump(cfg))
    Trainer(config_from_dict(ref_cfg), tmp_path / "ref").fit()
    ref = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert done["step"] == ref["step"] == 2 * h["epoch_batches"]
    for k, v in ref["model"].items():
        assert torch.allclose(v, done["model"][k], atol=1e-6), f"{k} differs after the budget stop and resume"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict, exp: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _grads_of_trainer(cfg, exp, rank, world, out)


def _grads_of_trainer(cfg: dict, exp: str, rank: int, world: int, out: str) -> None:
    from narspeech.data.dataset import ASRDataset, collate
    from narspeech.data.kaldi import read_data_dir
    from narspeech.train.distributed import cleanup
    from narspeech.train.trainer import Trainer

    tr = Trainer(config_from_dict(cfg), exp, resume=False)
    ds = ASRDataset(read_data_dir(cfg["data"]["train"][0]), tr.tokenizer)
    idx = list(range(4))[rank * 4 // world : (rank + 1) * 4 // world]
    tr.train_batch(collate([ds[i] for i in idx]))
    torch.save({n: p.grad.clone() for n, p in tr.model.named_parameters()}, out)
    cleanup(tr.dist)


def test_ddp_two_gloo_processes_match_joint_batch(tone_setup, tmp_path):
    """DDP over 2 gloo processes, 2 utterances each, gives the gradients of one process on all 4 utterances."""
    import torch.multiprocessing as mp

    cfg = tone_setup["config"]
    _grads_of_trainer(cfg, str(tmp_path / "single"), 0, 1, str(tmp_path / "g1.pt"))
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / "ddp"), str(tmp_path / "g2.pt")), nprocs=2, join=True)
    g1 = torch.load(tmp_path / "g1.pt", weights_only=True)
    g2 = torch.load(tmp_path / "g2.pt", weights_only=True)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=1e-6, msg=f"gradient of {k} differs")


def test_checkpoint_with_pickled_callable_is_refused(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "narspeech-1", "model": {}, "hook": os.system}, bad)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError):
        load_asr_model(bad)


def test_non_checkpoint_file_is_refused(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="not a narspeech model file"):
        load_checkpoint(p)
    (tmp_path / "trunc.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_model_file_is_self_contained(trained_tone_model):
    """model.pt holds its format, config, task (with the tokenizer in the task state) and weights (incl. CMVN), and
    no optimizer state."""
    c = load_checkpoint(trained_tone_model)
    assert {"format", "config", "task", "task_state", "model"} <= set(c) and "optimizers" not in c
    assert c["format"] == "narspeech-2" and c["task"] == "asr" and "tokenizer" in c["task_state"]
    assert "cmvn.mean" in c["model"] and float(c["model"]["cmvn.istd"].abs().sum()) > 0
    model, tok, cfg = load_asr_model(trained_tone_model)
    assert tok.vocab_size == model.vocab_size and cfg.model.name == "ctc"


def test_non_finite_loss_is_skipped_without_touching_weights(tone_setup, tmp_path):
    from narspeech.data.dataset import ASRDataset, collate
    from narspeech.data.kaldi import read_data_dir
    from narspeech.train.trainer import Trainer

    tr = Trainer(config_from_dict(tone_setup["config"]), tmp_path / "exp", resume=False)
    ds = ASRDataset(read_data_dir(tone_setup["train"]), tr.tokenizer)
    batch = collate([ds[0], ds[1]])
    batch["feats"][0, 5, 3] = float("nan")
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    assert tr.train_batch(batch) is None
    assert all(p.grad is None for p in tr.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    good = tr.train_batch(collate([ds[0], ds[1]]))
    assert good is not None and good["loss"] > 0 and "ctc" in good


def test_unknown_config_key_fails_before_training(tone_setup, tmp_path, capsys):
    from narspeech.bin import train

    rc = train.main(["--config", str(tone_setup["config_path"]), "--exp-dir", str(tmp_path / "e"), "optim.learning_rate=1"])
    assert rc == 2 and "optim.learning_rate" in capsys.readouterr().err


def test_torchrun_two_cpu_processes_train_end_to_end(tone_setup, tmp_path):
    """The real launcher: `torchrun --nproc_per_node 2` (gloo on CPU) trains, checkpoints and exports model.pt."""
    cfg = _write_cfg(tone_setup, tmp_path / "c.yaml", max_epochs=2, average_best=2)
    exp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "narspeech.cli", "train", "--config", str(cfg), "--exp-dir", str(exp)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "world size 2" in (exp / "train.log").read_text()
    ckpt = load_checkpoint(exp / "last.pt")
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 2
    model, tok, _ = load_asr_model(exp / "model.pt")
    assert tok.vocab_size == model.vocab_size


def test_gradient_accumulation_equals_the_joint_batch(tone_setup, tmp_path):
    """accum_grad=2 over two halves gives the gradient of one step on the joint batch (equal-size halves)."""
    from narspeech.data.dataset import ASRDataset, collate
    from narspeech.data.kaldi import read_data_dir
    from narspeech.train.trainer import Trainer

    def grads(accum: int, parts: list[list[int]]) -> dict[str, torch.Tensor]:
        cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
        cfg["optim"]["accum_grad"] = accum
        tr = Trainer(config_from_dict(cfg), tmp_path / f"a{accum}", resume=False)
        ds = ASRDataset(read_data_dir(tone_setup["train"]), tr.tokenizer)
        for i, idx in enumerate(parts):
            tr.train_batch(collate([ds[j] for j in idx]), sync=i == len(parts) - 1)
        return {n: p.grad.clone() for n, p in tr.model.named_parameters()}

    joint, accumulated = grads(1, [[0, 1, 2, 3]]), grads(2, [[0, 1], [2, 3]])
    for k in joint:
        torch.testing.assert_close(accumulated[k], joint[k], rtol=1e-4, atol=1e-6, msg=f"gradient of {k} differs")


def test_old_epoch_checkpoints_are_pruned(trained_tone_model):
    """keep_last=2 and average_best=1: at most 3 epoch files stay, the newest two among them."""
    from narspeech.train.checkpoint import epoch_checkpoints

    exp = trained_tone_model.parent
    kept = [p.name for p in epoch_checkpoints(exp)]
    last_epoch = load_checkpoint(exp / "last.pt")["epoch"] - 1
    assert 2 <= len(kept) <= 3 and kept[-2:] == [f"epoch{last_epoch - 1}.pt", f"epoch{last_epoch}.pt"]


def test_self_conditioned_ctc_overfits_to_zero_cer(tone_setup, tmp_path):
    """SC-CTC (InterCTC at layer 1, posteriors fed back) learns the generated utterances too."""
    from narspeech.asr.transcribe import transcribe_utterances
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import char_error_rate
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["conf"].update(interctc_layers=[1], interctc_weight=0.5, self_condition=True)
    out = Trainer(config_from_dict(cfg), tmp_path / "sc", resume=False).fit()
    model, tok, _ = load_asr_model(out)
    assert model.cond_proj is not None
    utts = read_data_dir(tone_setup["train"])
    hyps = {t.key: t.text for t in transcribe_utterances(model, tok, utts, batch_size=4)}
    cer = char_error_rate([u.text for u in utts], [hyps[u.utt_id] for u in utts])
    assert cer.errors == 0, f"CER {cer}: {hyps}"
    hist = load_checkpoint(tmp_path / "sc" / "last.pt")["history"]
    assert hist[-1]["train_interctc"] < 0.1 * hist[0]["train_interctc"]


def test_init_from_starts_a_new_model_from_a_trained_ones_weights(trained_tone_model, tone_setup, tmp_path):
    """``train.init_from``: an SC-CTC run starts from the trained CTC model's weights (its new self-conditioning
    projection keeps its initialisation) and is as good as that model from its first epoch on; a model whose shapes
    differ is refused with the tensor named; a resumed run ignores it."""
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["conf"].update(interctc_layers=[1], interctc_weight=0.5, self_condition=True)
    cfg["train"].update(init_from=str(trained_tone_model), max_epochs=1)
    src = load_checkpoint(trained_tone_model)["model"]
    fresh = Trainer(config_from_dict(cfg), tmp_path / "ft", resume=False)
    own = fresh.model.state_dict()
    fresh._try_resume()
    loaded = fresh.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in src.items())
    new = [k for k in own if k not in src]
    assert new and all(k.startswith("cond_proj") for k in new)
    assert all(torch.equal(loaded[k], own[k]) for k in new)

    Trainer(config_from_dict(cfg), tmp_path / "ft", resume=False).fit()
    first = load_checkpoint(tmp_path / "ft" / "last.pt")["history"][0]
    scratch = load_checkpoint(trained_tone_model.parent / "last.pt")["history"][0]
    assert first["valid_cer"] < 0.1 and scratch["valid_cer"] > 0.5, (first, scratch)

    # a model of other dimensions is refused, naming the tensor
    other = yaml.safe_load(yaml.safe_dump(cfg))
    other["model"]["conf"]["encoder"]["d_model"] = 32
    other["model"]["conf"]["encoder"]["ffn_dim"] = 64
    with pytest.raises(ValueError, match=r"shapes differ.*encoder"):
        Trainer(config_from_dict(other), tmp_path / "bad", resume=False)._try_resume()
    # resuming: last.pt's weights; init_from is not read (a missing file would fail if it were)
    cfg["train"]["init_from"] = str(tmp_path / "missing.pt")
    resumed = Trainer(config_from_dict(cfg), tmp_path / "ft")
    resumed._try_resume()
    assert resumed.epoch == 2
    with pytest.raises(CheckpointError, match="missing.pt: no such file"):
        Trainer(config_from_dict(cfg), tmp_path / "new", resume=False)._try_resume()


def test_model_files_of_the_first_format_still_load(trained_tone_model, tmp_path):
    """A model file in the layout written before tasks existed (format narspeech-1, the tokenizer at the top level,
    no task in the config), rebuilt key by key from today's file, loads and decodes the same."""
    import torch

    new = load_checkpoint(trained_tone_model)
    config = {k: v for k, v in new["config"].items() if k != "task"}
    old = {"format": "narspeech-1", "config": config, "tokenizer": new["task_state"]["tokenizer"],
           "model": new["model"], "averaged": new["averaged"]}
    torch.save(old, tmp_path / "old.pt")
    model_old, tok_old, cfg_old = load_asr_model(tmp_path / "old.pt")
    model_new, tok_new, cfg_new = load_asr_model(trained_tone_model)
    assert cfg_old == cfg_new and tok_old.token_list == tok_new.token_list
    feats = torch.randn(1, 120, 80)
    assert model_old.infer(feats, torch.tensor([120])) == model_new.infer(feats, torch.tensor([120]))
