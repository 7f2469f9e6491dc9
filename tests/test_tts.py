"""FastSpeech 2 end to end on four espeak-ng sentences: features dumped, the TTS task's batches, the engine trains the
model with its built-in aligner until it overfits, the model file synthesises (API and CLI) with the controls, and
bad input lines are named while the others are still synthesised."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

pytest.importorskip("phonemizer")

TEXTS = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
         "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish."]
STEPS = 120  # one batch per epoch: the whole corpus


@pytest.fixture(scope="module")
def tts_corpus(tmp_path_factory):
    from narspeech.recipes import espeak

    ok, why = espeak.is_available()
    if not ok:
        pytest.skip(f"espeak-ng unavailable: {why}")
    from narspeech.audio.io import save_wav
    from narspeech.bin import dump, tokens
    from narspeech.data.kaldi import Utterance, write_data_dir

    root = tmp_path_factory.mktemp("tts")
    utts = []
    for i, text in enumerate(TEXTS):
        path = root / f"utt{i}.wav"
        save_wav(path, espeak.synthesize(text, "en-us", 175, 50), espeak.SAMPLE_RATE)
        utts.append(Utterance(f"utt{i}", str(path), text, "spk"))
    write_data_dir(root / "train", utts)
    assert dump.main(["--data", str(root / "train"), "--out-dir", str(root / "dump"),
                      "--kind", "mel", "--kind", "pitch", "--kind", "energy"]) == 0
    assert tokens.main(["--data", str(root / "train"), "--out", str(root / "tok"), "--kind", "phoneme"]) == 0
    return root


def _config(root) -> dict:
    return {
        "task": "tts",
        "model": {"name": "fastspeech2", "conf": {
            "d_model": 64, "ffn_dim": 128, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0,
            "predictor_channels": 64, "predictor_dropout": 0.0, "bins": 32, "aligner_channels": 64,
            "bin_loss_start": 50, "prior_steps": 0}},
        "data": {"train": [str(root / "train")], "valid": [str(root / "train")], "dump": str(root / "dump"),
                 "tokenizer": str(root / "tok"), "max_frames": 2000},
        "optim": {"lr": 0.003, "scheduler": "constant", "warmup_steps": 10, "grad_clip": 1.0},
        "train": {"max_epochs": STEPS, "keep_last": 1, "average_best": 1, "log_interval": 1000, "seed": 0,
                  "amp": False},
    }


@pytest.fixture(scope="module")
def trained_tts(tts_corpus):
    from narspeech.config import config_from_dict
    from narspeech.train.trainer import Trainer

    out = Trainer(config_from_dict(_config(tts_corpus)), tts_corpus / "exp", resume=False).fit()
    assert out is not None and out.exists()
    return out


def test_task_batches_and_named_problems(tts_corpus, tmp_path):
    from narspeech.config import config_from_dict
    from narspeech.data.kaldi import Utterance, write_data_dir
    from narspeech.tts.task import TTSTask

    cfg = config_from_dict(_config(tts_corpus))
    task = TTSTask.create(cfg.data)
    ds = task.dataset([str(tts_corpus / "train")], train=True, seed=0)
    assert len(ds) == 4 and not ds.problems
    batch = task.collate([ds[i] for i in range(2)])
    B, T = batch["mel"].shape[:2]
    assert (B, batch["mel"].shape[2]) == (2, 80) and batch["pitch"].shape == batch["energy"].shape == (B, T)
    assert batch["mel_lens"].max() == T and (batch["token_lens"] <= batch["mel_lens"]).all()
    # per-speaker normalised log-F0: centred, unit scale over voiced frames
    assert abs(float(batch["pitch"][0, : batch["mel_lens"][0]].mean())) < 1.0
    # an utterance without features and one with wrong durations are named, the rest kept
    extra = tmp_path / "train"
    write_data_dir(extra, [Utterance("utt0", "x.wav", TEXTS[0], "spk"), Utterance("zzz", "y.wav", "hi", "spk")])
    (extra / "durations").write_text("utt0 1 2 3\n")
    shutil.copytree(tts_corpus / "dump" / "train", tmp_path / "dump" / "train")  # the dump of a dir named train
    cfg.data.dump = str(tmp_path / "dump")
    ds2 = task.__class__(cfg.data, task.tokenizer, task.mel, task.stats).dataset([str(extra)], True, 0)
    problems = dict(ds2.problems)
    assert "zzz" in problems and "no mel/pitch/energy features" in problems["zzz"]
    assert "utt0" in problems and "durations give 3 tokens" in problems["utt0"]


@pytest.mark.slow
def test_fastspeech2_overfits_with_its_aligner(trained_tts, tts_corpus):
    from narspeech import load_model

    hist = torch.load(tts_corpus / "exp" / "last.pt", weights_only=True)["history"]
    first, last = hist[0], hist[-1]
    assert last["train_mel"] < first["train_mel"] / 3  # the decoder learned the mels
    assert last["train_duration"] < 0.05 and last["train_align"] < first["train_align"]
    assert last["valid_synth_loss"] < first["valid_synth_loss"] / 3
    model, task, cfg = load_model(trained_tts)  # the model file alone: tokenizer, statistics, mel definition
    ds = task.dataset(cfg.data.train, train=False, seed=0)
    batch = task.collate([ds[i] for i in range(len(ds))])
    out = model.eval().infer(batch["tokens"], batch["token_lens"])
    # durations from the duration predictor alone: every utterance within 10 % of its true length
    ratio = out["mel_lens"].float() / batch["mel_lens"].float()
    assert ((ratio - 1).abs() < 0.1).all(), ratio
    for b in range(len(ds)):
        T = int(batch["mel_lens"][b])
        pred = F.interpolate(out["mel"][b, : int(out["mel_lens"][b])].T[None], size=T, mode="linear")[0].T
        target = batch["mel"][b, :T]
        err = float((pred - target).abs().mean())
        baseline = float((target - target.mean(0)).abs().mean())  # what a constant mel scores
        assert err < 0.4 * baseline, (err, baseline)


@pytest.mark.slow
def test_synthesize_api_controls(trained_tts):
    from narspeech.tts.synthesize import TTS, TTSInputError, synthesize

    tts = TTS.load(str(trained_tts))
    base, fast, high = (synthesize([TEXTS[0]], tts, **kw)[0] for kw in ({}, {"speed": 2.0}, {"pitch_shift": 12.0}))
    assert base["wave"].dtype == np.float32 and base["sample_rate"] == 22050
    assert base["wave"].size == base["mel"].shape[0] * 256 and np.abs(base["wave"]).max() <= 1.0
    assert int(base["durations"].sum()) == base["mel"].shape[0]
    assert abs(fast["mel"].shape[0] / base["mel"].shape[0] - 0.5) < 0.05  # speed 2.0 halves the frames
    assert np.allclose(high["pitch"].numpy(), 2 * base["pitch"].numpy(), rtol=1e-3)  # an octave up
    two = synthesize([f"{TEXTS[0]} {TEXTS[1]}"], tts)[0]  # split at the sentence end, mels joined
    assert two["mel"].shape[0] > base["mel"].shape[0] and len(two["tokens"]) > len(base["tokens"])
    with pytest.raises(TTSInputError, match="text 2"):
        synthesize([TEXTS[0], "   "], tts)


@pytest.mark.slow
def test_synthesize_cli_names_bad_lines_and_writes_the_rest(trained_tts, trained_tone_model, tmp_path, capsys):
    from narspeech.bin import synthesize

    lines = tmp_path / "lines.txt"
    lines.write_text(f"good1 {TEXTS[1]}\nempty\n../evil {TEXTS[0]}\npunct ?!...\ngood2 {TEXTS[2]}\ngood1 again\n")
    rc = synthesize.main(["--model", str(trained_tts), "--text-file", str(lines), "--output-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert rc == 1
    for bad in ("empty", "evil", "punct", "duplicate"):
        assert bad in err
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["good1.wav", "good2.wav"]
    wav, sr = sf.read(tmp_path / "w" / "good1.wav")
    assert sr == 22050 and wav.size > 22050 // 2
    out = tmp_path / "one.wav"
    assert synthesize.main(["--model", str(trained_tts), "--text", TEXTS[3], "--output", str(out),
                            "--speed", "1.5"]) == 0
    assert sf.info(str(out)).frames > 0
    # a missing model file, and one of another task (an ASR model), are refused by name before any synthesis
    assert synthesize.main(["--model", str(tmp_path / "missing.pt"), "--text", "hi", "--output", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert synthesize.main(["--model", str(trained_tone_model), "--text", "hi", "--output", str(out)]) == 2
    assert "not a TTS model" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_tts_writes_rows_figures_and_wavs(trained_tts, tts_corpus, tmp_path):
    from narspeech.bin import bench

    out = tmp_path / "bench"
    assert bench.main(["tts", "--model", str(trained_tts), "--data", str(tts_corpus / "train"), "--out-dir", str(out),
                       "--max-utts", "2", "--repeats", "1", "--rtf-utts", "1", "--no-gpu"]) == 0
    res = json.loads((out / "results.json").read_text())
    gt, row = res["rows"]
    assert gt["system"] == "ground truth" and row["device"] == "cpu" and row["utts"] == 2
    # the overfitted model reproduces its training sentences: a few dB of MCD, not tens
    assert 0 < row["mcd_db"] < 8 and row["latency_ms"] > 0 and row["rtf_griffin_lim"] > 0
    for judge in res["meta"]["judges"]:
        assert 0 <= gt[f"cer_{judge}"] <= 1 and 0 <= row[f"cer_{judge}"]
    assert (out / "tradeoff.png").stat().st_size > 0 if res["meta"]["judges"] else True
    assert len(list((out / "wav").rglob("*.wav"))) == 2 and list(out.glob("sample_*.png"))
