"""Mini runs of the TTS recipes (egs/mini/tts1, egs/ljsynth/tts1): every stage runs and writes what the next stage
and the user need (tiny corpus, tiny model, a few steps); accuracy is tests/test_tts.py's business."""

from __future__ import annotations

import pytest
import soundfile as sf

from narspeech.data.kaldi import read_kv
from test_prepare_ljsynth import write_metadata
from test_recipes import copy_recipe, run_recipe

pytest.importorskip("phonemizer")

TINY_TTS = ("train.max_epochs=2 train.max_minutes=0 model.conf.d_model=32 model.conf.ffn_dim=64 "
            "model.conf.encoder_layers=1 model.conf.decoder_layers=1 model.conf.predictor_channels=32 "
            "model.conf.bins=16 data.num_workers=0")


@pytest.fixture(autouse=True)
def _espeak():
    from narspeech.recipes import espeak

    ok, why = espeak.is_available()
    if not ok:
        pytest.skip(f"espeak-ng cannot be loaded here, the TTS recipes cannot generate their corpora: {why}")


def _check_model(path):
    from narspeech import load_model

    model, task, cfg = load_model(path)
    assert cfg.task == "tts" and task.tokenizer.kind == "phoneme" and task.mel.sample_rate == 22050
    assert cfg.model.conf.d_model == 32


@pytest.mark.slow
def test_mini_tts_recipe(tmp_path):
    recipe = copy_recipe(tmp_path, "mini", "tts1")
    proc = run_recipe(recipe, "--num_train", "8", "--num_dev", "2", "--num_test", "3", "--num_synth", "2", "--nj", "1",
                      "--train_args", TINY_TTS, "--asr_model", str(tmp_path / "no_asr.pt"))
    assert {sf.info(str(p)).samplerate for p in (recipe / "data/wav").glob("*.wav")} == {22050}
    for kind in ("feats", "pitch", "energy"):
        assert len(read_kv(recipe / f"dump/train/{kind}.scp")) == 8
    exp = recipe / "exp/fastspeech2"
    _check_model(exp / "model.pt")
    assert len(list((exp / "synth").glob("*.wav"))) == 2 and (exp / "hello.wav").is_file()
    assert "stage 4: skipped: no ASR model" in proc.stderr


@pytest.mark.slow
def test_ljsynth_tts_recipe(tmp_path):
    meta = write_metadata(tmp_path / "metadata.csv", 40)
    recipe = copy_recipe(tmp_path, "ljsynth", "tts1")
    run_recipe(recipe, "--lj_text", str(meta), "--num_train", "8", "--num_dev", "2", "--num_test", "2", "--nj", "1",
               "--train_args", TINY_TTS)
    assert set(read_kv(recipe / "data/train/utt2spk").values()) == {"single"}
    assert len(read_kv(recipe / "dump/test/feats.scp")) == 2
    exp = recipe / "exp/fastspeech2"
    _check_model(exp / "model.pt")
    assert len(list((exp / "synth/test").glob("*.wav"))) == 2
