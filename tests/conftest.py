"""Shared fixtures: a tiny generated "tone speech" corpus (no network, no shared data) and a trained tiny model.

Each character is a 90 ms tone at its own frequency, characters are separated by 30 ms gaps and words by 150 ms
of silence, so a small CTC model can learn the mapping in seconds: enough to show real learning in tests.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

SR = 16000
ALPHABET = "abcdefgh"
WORDS = ["bad", "cab", "fade", "head", "bag", "face", "gab", "hedge", "ace", "beach"]
SHARED_DATA = Path(os.environ.get("NARSPEECH_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def tone_speech(text: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(0.1 * SR))]
    for w_i, word in enumerate(text.split()):
        if w_i:
            parts.append(np.zeros(int(0.15 * SR)))
        for c in word:
            f = 300.0 * (1.25 ** ALPHABET.index(c))
            t = np.arange(int(0.09 * SR)) / SR
            env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
            parts.append(0.3 * env * np.sin(2 * math.pi * f * t))
            parts.append(np.zeros(int(0.03 * SR)))
    parts.append(np.zeros(int(0.1 * SR)))
    x = np.concatenate(parts)
    return (x + 0.003 * rng.standard_normal(x.size)).astype(np.float32)


def make_tone_corpus(root: Path, texts: list[str], name: str) -> Path:
    from narspeech.data.kaldi import Utterance, write_data_dir

    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    utts = []
    for i, text in enumerate(texts):
        uid = f"{name}-{i:03d}"
        p = wav_dir / f"{uid}.wav"
        sf.write(p, tone_speech(text, seed=i), SR, subtype="PCM_16")
        utts.append(Utterance(uid, str(p), text, "spk1"))
    write_data_dir(root / name, utts)
    return root / name


TRAIN_TEXTS = ["bad cab", "fade head", "bag face", "gab hedge", "ace beach", "head bad", "cab fade", "beach gab"]


@pytest.fixture(scope="session")
def tone_setup(tmp_path_factory) -> dict:
    """Data dirs, tokenizer, CMVN and a config dict for a tiny Transformer-CTC run on tone speech."""
    from narspeech.bin import cmvn, tokens

    root = tmp_path_factory.mktemp("tone")
    train = make_tone_corpus(root, TRAIN_TEXTS, "train")
    assert tokens.main(["--data", str(train), "--out", str(root / "tok")]) == 0
    assert cmvn.main(["--data", str(train), "--out", str(root / "cmvn.json")]) == 0
    cfg = {
        "model": {"name": "ctc", "conf": {
            "encoder": {"block": "transformer", "d_model": 48, "num_heads": 2, "ffn_dim": 96, "num_layers": 2, "dropout": 0.0,
                        "subsampling_channels": 16},
            "specaug": {"num_freq_masks": 0, "num_time_masks": 0},
        }},
        "data": {"train": [str(train)], "valid": [str(train)], "tokenizer": str(root / "tok"), "cmvn": str(root / "cmvn.json"),
                 "max_frames": 600, "num_workers": 0, "dither": 0.0},
        "optim": {"lr": 0.005, "warmup_steps": 20},
        "train": {"max_epochs": 60, "keep_last": 2, "average_best": 1, "log_interval": 1000, "seed": 0},
    }
    cfg_path = root / "conf.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return {"root": root, "train": train, "config": cfg, "config_path": cfg_path}


@pytest.fixture(scope="session")
def trained_tone_model(tone_setup, tmp_path_factory) -> Path:
    """Train the tiny model once for the tests that need a model file; returns exp/model.pt."""
    from narspeech.config import config_from_dict
    from narspeech.train.trainer import Trainer

    exp = tmp_path_factory.mktemp("exp") / "tone_ctc"
    out = Trainer(config_from_dict(tone_setup["config"]), exp, resume=False).fit()
    assert out is not None and out.exists()
    hist = json.loads(json.dumps(__import__("torch").load(exp / "last.pt", weights_only=True)["history"]))
    assert hist[-1]["valid_cer"] < hist[0]["valid_cer"]
    return out
