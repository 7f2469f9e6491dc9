"""One test per case a new user hit first: short audio, output paths, crashes mid-run, empty lists, missing files,
progress bars, logger names (the fuzz test in test_fuzz_cli.py draws the mixtures)."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, TRAIN_TEXTS, tone_speech
from narspeech import cli

ROOT = Path(__file__).resolve().parents[1]


def _good(tmp_path: Path, n: int = 2) -> list[Path]:
    out = []
    for i in range(n):
        p = tmp_path / f"good{i}.wav"
        sf.write(p, tone_speech(TRAIN_TEXTS[i], seed=i), SR)
        out.append(p)
    return out


def test_audio_shorter_than_one_frame_is_named_and_the_batch_goes_on(trained_tone_model, tmp_path, capsys):
    """Under 25 ms torchaudio's fbank asserts; the length is checked first, so the job transcribes the rest."""
    good = _good(tmp_path)
    files = []
    for n in (0, 1, 100, 399, 400, 1000):
        p = tmp_path / f"short{n}.wav"
        sf.write(p, np.full(n, 0.1, dtype=np.float32), SR)
        files.append(p)
    out_file = tmp_path / "hyp.txt"
    rc = cli.main(["transcribe", "--model", str(trained_tone_model), "--output", str(out_file), "--batch-size", "3",
                   str(good[0]), *map(str, files), str(good[1])])
    err = capsys.readouterr().err
    assert rc == 1
    assert out_file.read_text().splitlines() == [f"good0 {TRAIN_TEXTS[0]}", f"good1 {TRAIN_TEXTS[1]}"]
    assert "short0.wav: no samples" in err
    for n in (1, 100, 399, 400, 1000):
        assert re.search(rf"ERROR short{n}: .*short{n}.wav: too short \({n} samples", err), err
    assert "6 of 8 inputs failed" in err and "Traceback" not in err


def test_missing_audio_file_says_no_such_file(trained_tone_model, tmp_path, capsys):
    rc = cli.main(["transcribe", "--model", str(trained_tone_model), str(tmp_path / "nope.wav"), str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{tmp_path / 'nope.wav'}: no such file" in err and "System error" not in err
    assert "is a directory" in err


def test_empty_wav_scp_warns_and_exits_1(trained_tone_model, tmp_path, capsys):
    scp = tmp_path / "wav.scp"
    scp.write_text("")
    out_file = tmp_path / "hyp.txt"
    rc = cli.main(["transcribe", "--model", str(trained_tone_model), "--wav-scp", str(scp), "--output", str(out_file)])
    err = capsys.readouterr().err
    assert rc == 1 and "warning: no inputs" in err and out_file.read_text() == ""


@pytest.mark.parametrize("case", ["parent_is_file", "is_directory", "read_only"])
def test_unwritable_output_fails_before_the_model_loads(tmp_path, capsys, monkeypatch, case):
    """One line, exit 2, no traceback; the model path is bogus, so the output was checked first."""
    wav = _good(tmp_path, 1)[0]
    if case == "parent_is_file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "hyp.txt"
    elif case == "is_directory":
        out = tmp_path / "adir"
        out.mkdir()
    else:
        out = tmp_path / "ro" / "hyp.txt"
        real_open = open

        def read_only_open(path, mode="r", *a, **k):
            if "w" in mode and str(path).startswith(str(tmp_path / "ro")):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_open(path, mode, *a, **k)

        monkeypatch.setattr("builtins.open", read_only_open)
    rc = cli.main(["transcribe", "--model", str(tmp_path / "no_model.pt"), "--output", str(out), str(wav)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("narspeech transcribe: cannot write --output"), err
    assert {"parent_is_file": "not a directory", "is_directory": "is a directory", "read_only": "read-only"}[case] in err


def test_unwritable_out_dir_of_decode_fails_before_the_model_loads(tone_setup, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc = cli.main(["decode", "--model", str(tmp_path / "no_model.pt"), "--data", str(tone_setup["train"]),
                   "--out-dir", str(tmp_path / "afile" / "dec")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write --out-dir" in err and "not a directory" in err and "afile is a file" in err


@pytest.mark.parametrize("crash", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_crash_mid_run_keeps_the_finished_lines_and_leaves_the_old_output(trained_tone_model, tmp_path, monkeypatch,
                                                                              capsys, crash):
    from narspeech.asr import transcribe as lib

    real = lib.transcribe_utterances

    def crashing(*args, **kwargs):
        for i, t in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise crash
            yield t

    monkeypatch.setattr(lib, "transcribe_utterances", crashing)
    good = _good(tmp_path, 3)
    out_file = tmp_path / "hyp.txt"
    out_file.write_text("old results\n")
    argv = ["transcribe", "--model", str(trained_tone_model), "--output", str(out_file), *map(str, good)]
    if isinstance(crash, KeyboardInterrupt):
        assert cli.main(argv) == 130
    else:
        with pytest.raises(RuntimeError, match="disk on fire"):  # a bug keeps its traceback; the files are safe
            cli.main(argv)
    err = capsys.readouterr().err
    assert out_file.read_text() == "old results\n"
    partial = tmp_path / "hyp.txt.partial"
    assert partial.read_text().splitlines() == [f"good0 {TRAIN_TEXTS[0]}", f"good1 {TRAIN_TEXTS[1]}"]
    assert "stopped after 2 of 3 inputs" in err and "hyp.txt.partial" in err and "was not changed" in err
    assert not list(tmp_path.glob(".hyp.txt.*"))


def test_a_batch_that_fails_to_decode_is_retried_one_utterance_at_a_time(trained_tone_model, tmp_path, monkeypatch,
                                                                         capsys):
    """Only the utterance that fails alone is named; the others of its batch are transcribed."""
    import torch

    from narspeech.asr import transcribe as lib

    real = lib.decode_features
    poison = len(tone_speech(TRAIN_TEXTS[2], seed=2))

    def flaky(model, tok, feats, opts):
        if any(abs(f.size(0) - (poison - 240) // 160) <= 1 for f in feats):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, tok, feats, opts)

    monkeypatch.setattr(lib, "decode_features", flaky)
    good = _good(tmp_path, 3)
    rc = cli.main(["transcribe", "--model", str(trained_tone_model), "--batch-size", "3", *map(str, good)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out.splitlines() == [f"good0 {TRAIN_TEXTS[0]}", f"good1 {TRAIN_TEXTS[1]}"]
    assert "ERROR good2: " in err and "decoding failed: OutOfMemoryError" in err


def test_progress_bars_only_on_a_terminal_and_never_under_quiet(monkeypatch):
    import sys

    from narspeech import progress

    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not progress.bars_enabled() and progress.progress(range(3)).disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.bars_enabled()
    progress.set_quiet(True)
    try:
        assert not progress.bars_enabled()
    finally:
        progress.set_quiet(False)
    assert progress.bars_enabled()


def test_every_logger_is_named_after_its_module():
    bad = []
    for p in (ROOT / "narspeech").rglob("*.py"):
        for m in re.finditer(r"logging\.getLogger\(([^)]*)\)", p.read_text()):
            if m.group(1) != "__name__":
                bad.append(f"{p.relative_to(ROOT)}: getLogger({m.group(1)})")
    assert not bad, bad


def test_training_skips_unusable_utterances_by_name(tone_setup, tmp_path, caplog):
    """A short, a corrupt and a NaN utterance in the training set: named in the log, the run trains on the rest."""
    import shutil

    import yaml

    from narspeech.config import config_from_dict
    from narspeech.train.trainer import Trainer

    data = tmp_path / "train"
    shutil.copytree(tone_setup["train"], data)
    bad = {"zz_short": np.zeros(50, dtype=np.float32), "zz_nan": np.full(8000, np.nan, dtype=np.float32)}
    for k, x in bad.items():
        sf.write(tmp_path / f"{k}.wav", x, SR, subtype="FLOAT")
    (tmp_path / "zz_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    for k in ("zz_corrupt", "zz_nan", "zz_short"):
        with open(data / "wav.scp", "a") as f:
            f.write(f"{k} {tmp_path / (k + '.wav')}\n")
        with open(data / "text", "a") as f:
            f.write(f"{k} bad cab\n")
        with open(data / "utt2spk", "a") as f:
            f.write(f"{k} spk1\n")
    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["data"]["train"] = [str(data)]
    cfg["train"].update(max_epochs=1)
    caplog.set_level(logging.WARNING)
    out = Trainer(config_from_dict(cfg), tmp_path / "exp", resume=False).fit()
    assert out is not None and out.exists()
    assert "skipping 2 of 11 utterances" in caplog.text
    assert "zz_short" in caplog.text and "too short" in caplog.text and "zz_corrupt" in caplog.text
    assert "skipped utterance zz_nan" in caplog.text and "NaN" in caplog.text


def test_log_lines_are_written_above_a_progress_bar_not_into_it(monkeypatch, capsys):
    import sys

    from narspeech import progress

    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    logger = logging.getLogger("narspeech.test_progress")
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        with progress.logs_above_bars():
            for i in progress.progress(range(3), desc="work", mininterval=0):
                if i == 1:
                    logger.warning("a line of its own")
                    progress.write("an error line of its own")
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    lines = err.replace("\r", "\n").splitlines()
    assert "a line of its own" in lines and "an error line of its own" in lines, err
    assert any(line.startswith("work:") for line in lines), err


def test_missing_files_given_to_any_verb_are_one_line_errors(tmp_path, capsys):
    for argv in (["score", "--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp")],
                 ["tokens", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "tok")],
                 ["train", "--config", str(tmp_path / "none.yaml"), "--exp-dir", str(tmp_path / "exp")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "no such file or directory" in err and "Traceback" not in err
