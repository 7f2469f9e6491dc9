"""Typed YAML configs with dotted overrides, and a dry run of every recipe config (build, forward/backward, infer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from narspeech.asr.ctc import CTCModelConfig
from narspeech.config import ConfigError, ExperimentConfig, config_from_dict, load_config, to_dict
from narspeech.registry import MODELS, TASKS
from narspeech.train.loss import total_loss

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(REPO.glob("egs/*/*/conf/*.yaml"))
# the tasks narspeech ships (the engine tests register a toy one)
BUILTIN_TASKS = [t for t in TASKS.names() if TASKS.get(t).__module__.startswith("narspeech.")]


def test_defaults():
    cfg = load_config(None)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.model.name == "ctc"
    assert isinstance(cfg.model.conf, CTCModelConfig)
    assert cfg.model.conf.encoder.block == "conformer" and cfg.model.conf.input_dim == 80
    assert cfg.data.sample_rate == 16000 and cfg.data.speed_perturb == [1.0] and cfg.data.train == []
    assert cfg.optim.lr == 1e-3 and cfg.optim.betas == [0.9, 0.98]
    assert cfg.train.amp is True and cfg.train.max_epochs == 50
    # defaults are not shared between instances (default_factory)
    other = load_config(None)
    other.data.speed_perturb.append(1.1)
    assert cfg.data.speed_perturb == [1.0]


def test_overrides_of_every_type():
    cfg = load_config(None, [
        "train.max_epochs=3",
        "optim.lr=1e-4",  # YAML 1.1 reads this as a string
        "optim.weight_decay=0.05",
        "data.speed_perturb=[0.9, 1.0, 1.1]",
        "data.train=[data/a, data/b]",
        "data.tokenizer=data/token_char",
        "train.amp=false",
        "model.conf.encoder.d_model=32",
        "model.conf.encoder.block=transformer",
        "model.conf.specaug.max_time_ratio=0.1",
        "--train.seed=7",
    ])
    assert cfg.train.max_epochs == 3 and type(cfg.train.max_epochs) is int
    assert cfg.optim.lr == pytest.approx(1e-4) and type(cfg.optim.lr) is float
    assert cfg.optim.weight_decay == 0.05
    assert cfg.data.speed_perturb == [0.9, 1.0, 1.1]
    assert cfg.data.train == ["data/a", "data/b"]
    assert cfg.data.tokenizer == "data/token_char"
    assert cfg.train.amp is False
    assert cfg.model.conf.encoder.d_model == 32 and cfg.model.conf.encoder.block == "transformer"
    assert cfg.model.conf.encoder.num_heads == 4  # untouched siblings keep their defaults
    assert cfg.model.conf.specaug.max_time_ratio == 0.1
    assert cfg.train.seed == 7


def test_empty_override_is_the_empty_string():
    # "key=" clears a string option (the Imputer's teacher -> self-alignment) rather than setting YAML's null
    base = load_config(None, ["model.name=imputer", "model.conf.teacher=exp/ctc/model.pt"])
    assert base.model.conf.teacher == "exp/ctc/model.pt"
    for empty in ("", "''", " "):
        cfg = load_config(None, ["model.name=imputer", "model.conf.teacher=exp/ctc/model.pt", f"model.conf.teacher={empty}"])
        assert cfg.model.conf.teacher == ""


def test_overrides_apply_on_top_of_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({
        "model": {"name": "ctc", "conf": {"encoder": {"d_model": 64, "num_layers": 2}}},
        "optim": {"lr": 0.002},
    }))
    cfg = load_config(p, ["model.conf.encoder.num_layers=3"])
    assert cfg.model.conf.encoder.d_model == 64
    assert cfg.model.conf.encoder.num_layers == 3
    assert cfg.optim.lr == 0.002
    # the file itself is not modified by overrides
    assert yaml.safe_load(p.read_text())["model"]["conf"]["encoder"]["num_layers"] == 2


def test_int_accepted_for_float(tmp_path):
    cfg = load_config(None, ["optim.lr=1", "model.conf.encoder.dropout=0", "data.speed_perturb=[1, 1.1]"])
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float
    assert type(cfg.model.conf.encoder.dropout) is float
    assert [type(x) for x in cfg.data.speed_perturb] == [float, float]
    p = tmp_path / "c.yaml"
    p.write_text("train: {max_minutes: 6}\n")
    assert type(load_config(p).train.max_minutes) is float


@pytest.mark.parametrize(
    "override, key",
    [
        ("foo=1", "foo"),
        ("optim.lrr=1e-3", "optim.lrr"),
        ("data.max_frame=100", "data.max_frame"),
        ("model.conf.encoderr.d_model=3", "model.conf.encoderr"),
        ("model.conf.encoder.dmodel=3", "model.conf.encoder.dmodel"),
        ("model.size=3", "model.size"),
    ],
)
def test_unknown_key_is_named(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"'{key}'" in str(e.value)
    assert "valid:" in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.max_epochs=abc", "train.max_epochs"),
        ("train.max_epochs=1.5", "train.max_epochs"),
        ("train.max_epochs=true", "train.max_epochs"),  # a bool is not an int
        ("train.amp=1", "train.amp"),
        ("optim.lr=fast", "optim.lr"),
        ("optim.betas=0.9", "optim.betas"),
        ("data.speed_perturb=[0.9, fast]", "data.speed_perturb[1]"),
        ("data.tokenizer=[a, b]", "data.tokenizer"),
        ("model.conf.encoder.d_model=big", "model.conf.encoder.d_model"),
        ("model.conf.encoder=5", "model.conf.encoder"),
        ("optim=3", "optim"),
        ("model.name=5", "model.name"),
    ],
)
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value).split(": ", 1)[1].startswith(key + ":"), str(e.value)


def test_unknown_model_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.name=transformer_ctc"])
    msg = str(e.value)
    assert "model.name" in msg and "transformer_ctc" in msg
    for name in MODELS.names():
        assert name in msg
    with pytest.raises(KeyError, match="valid: .*ctc"):
        MODELS.get("transformer_ctc")


def test_bad_files_and_overrides(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml.*mapping"):
        load_config(p)
    p = tmp_path / "typo.yaml"
    p.write_text("optim: {lr: 0.1, warmup: 5}\n")
    with pytest.raises(ConfigError, match="typo.yaml.*'optim.warmup'"):
        load_config(p)
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(None, ["optim.lr"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == load_config(None)


def test_config_dict_round_trip():
    cfg = load_config(None, ["model.conf.encoder.d_model=32", "data.speed_perturb=[0.9, 1.1]"])
    d = to_dict(cfg)
    assert d["model"]["name"] == "ctc" and d["model"]["conf"]["encoder"]["d_model"] == 32
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg


# ---------------------------------------------------------------- dry run of every recipe config


def test_configs_found():
    assert CONFIGS, f"no configs under {REPO}/egs/*/*/conf/"


def _dummy_batch(vocab_size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    feats = torch.zeros(2, 120, 80)
    feats[0] = torch.randn(120, 80, generator=g) * 3 + 8
    feats[1, :90] = torch.randn(90, 80, generator=g) * 3 + 8
    tokens = torch.full((2, 5), -1, dtype=torch.long)
    tokens[0] = torch.randint(4, vocab_size, (5,), generator=g)
    tokens[1, :3] = torch.randint(4, vocab_size, (3,), generator=g)
    return {
        "utt_ids": ["a", "b"],
        "feats": feats,
        "feat_lens": torch.tensor([120, 90]),
        "tokens": tokens,
        "token_lens": torch.tensor([5, 3]),
    }


@pytest.fixture
def one_thread():
    """Tiny batches gain nothing from intra-op threads, and on a busy machine thread hand-offs dominate."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_config_dry_run(path, one_thread):
    torch.manual_seed(0)
    cfg = load_config(path)
    # what checkpoints and exp/config.yaml store reloads to the same config
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg

    vocab = 30
    if getattr(cfg.model.conf, "teacher", ""):
        # Imputer: the teacher is a model the recipe trains first; without it the model aligns itself (same code path)
        cfg.model.conf.teacher = ""
    model = MODELS.get(cfg.model.name).from_config(cfg.model.conf, vocab_size=vocab)
    batch = _dummy_batch(vocab)
    if cfg.task == "tts":  # text in, mel (+ pitch and energy targets) out
        batch["mel"], batch["mel_lens"] = batch.pop("feats"), batch.pop("feat_lens")
        batch["pitch"], batch["energy"] = torch.randn(2, 120), torch.randn(2, 120)
    model.train()
    terms = model(batch)
    assert terms, "no loss terms"
    for name, term in terms.items():
        assert term.value.dim() == 0 and torch.isfinite(term.value), name
    loss = total_loss(terms)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)

    model.eval()
    if cfg.task == "tts":
        out = model.infer(batch["tokens"], batch["token_lens"])
        assert out["mel"].shape[0] == 2 and out["mel"].shape[2] == 80 and (out["mel_lens"] > 0).all()
        return
    hyps = model.infer(batch["feats"], batch["feat_lens"])
    assert isinstance(hyps, list) and len(hyps) == 2
    for h in hyps:
        assert all(isinstance(t, int) and 0 < t < vocab for t in h)


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_conf_defaults_yaml_is_current(capsys, task):
    """conf/defaults/<task>.yaml documents every key: it must equal what `narspeech train --print-config --task T`
    prints, for every registered task."""
    from narspeech.bin import train

    assert train.main(["--print-config", "--task", task]) == 0
    printed = capsys.readouterr().out
    text = (Path(__file__).resolve().parents[1] / "conf" / "defaults" / f"{task}.yaml").read_text()
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    assert body == printed, (f"regenerate with: narspeech train --print-config --task {task} > "
                             f"conf/defaults/{task}.yaml (keep the header)")
