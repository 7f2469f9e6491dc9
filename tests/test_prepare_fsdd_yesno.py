"""FSDD and yes/no recipes: fake corpora in tmp_path (no network), plus checks on the real shared data when present."""

from __future__ import annotations

import logging
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from narspeech.data.kaldi import read_data_dir, read_kv, validate_data_dir
from narspeech.recipes import fsdd, yesno
from narspeech.recipes.fsdd import (
    DIGIT_WORDS,
    EDGE_SECONDS,
    GAP_SECONDS,
    MAX_TAKES_PER_UTT,
    MIN_TAKES_PER_UTT,
    TARGET_SAMPLE_RATE,
    DownloadError,
    prepare_fsdd,
    split_of_take,
)
from narspeech.recipes.yesno import prepare_yesno

SOURCE_RATE = 8000
FAKE_SPEAKERS = ("alice", "bob")
FAKE_DIGITS = (1, 4, 7)
FAKE_TAKES = range(13)  # 0-4 test, 5-9 dev, 10-12 train
CORRUPT_TAKE = "7_alice_11.wav"  # a well-named train take whose content is garbage
JUNK_NAME = "junk_name.wav"
AMPLITUDE = 0.3


def _write_tone(path: Path, num_samples: int, freq: float, seed: int, channels: int = 1) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SOURCE_RATE
    x = AMPLITUDE * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(num_samples)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x.astype(np.float32), SOURCE_RATE, subtype="PCM_16")


def _fake_take_samples(digit: int, take: int) -> int:
    return 800 + 40 * take + 100 * digit  # 0.1-0.27 s, all different, so durations reveal which takes were used


def make_fake_fsdd(root: Path, takes: range = FAKE_TAKES) -> Path:
    rec = root / "recordings"
    rec.mkdir(parents=True)
    for s, speaker in enumerate(FAKE_SPEAKERS):
        for digit in FAKE_DIGITS:
            for take in takes:
                n = _fake_take_samples(digit, take)
                _write_tone(rec / f"{digit}_{speaker}_{take}.wav", n, 200 + 50 * digit + 10 * s, seed=take)
    (rec / JUNK_NAME).write_bytes(b"not in the FSDD naming scheme")
    if (rec / CORRUPT_TAKE).exists():
        (rec / CORRUPT_TAKE).write_bytes(b"RIFF\x00\x00garbage, not a wav")
    return root


def make_fake_yesno(root: Path, num_files: int = 12) -> tuple[Path, list[str]]:
    waves = root / "waves_yesno"
    waves.mkdir(parents=True)
    names = []
    for i in range(num_files):
        labels = [(i >> b) & 1 for b in range(8)]
        name = "_".join(map(str, labels)) + ".wav"
        names.append(name)
        _write_tone(waves / name, 4000 + 100 * i, 300.0, seed=i)
    (waves / "README").write_text("the official archive has one too\n")
    (waves / "maybe.wav").write_bytes(b"junk")
    return root, sorted(names)


def _takes(set_dir: Path) -> dict[str, list[str]]:
    return {u: v.split() for u, v in read_kv(set_dir / "utt2takes").items()}


@pytest.fixture
def fake_fsdd(tmp_path: Path) -> Path:
    return make_fake_fsdd(tmp_path / "fsdd")


def test_fsdd_splits_by_take(fake_fsdd: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    data, wav = tmp_path / "data", tmp_path / "wav"
    sets = prepare_fsdd(fake_fsdd, data, wav, num_train=30, num_dev=6, num_test=6, seed=3)
    assert {k: len(v) for k, v in sets.items()} == {"train": 30, "dev": 6, "test": 6}
    # junk and corrupt files are named in warnings and never used
    assert JUNK_NAME in caplog.text and CORRUPT_TAKE in caplog.text
    rec = fake_fsdd / "recordings"
    for name, utts in sets.items():
        assert validate_data_dir(data / name) == []
        utt2takes = _takes(data / name)
        assert sorted(utt2takes) == sorted(u.utt_id for u in utts)
        for u in read_data_dir(data / name):
            stems = utt2takes[u.utt_id]
            assert MIN_TAKES_PER_UTT <= len(stems) <= MAX_TAKES_PER_UTT
            digits, speakers, take_ids = zip(*(s.split("_") for s in stems))
            assert CORRUPT_TAKE[:-4] not in stems
            assert {split_of_take(int(t)) for t in take_ids} == {name}, f"{u.utt_id} uses takes of another split"
            assert set(speakers) == {u.speaker} and u.utt_id.startswith(f"{u.speaker}-{name}-")
            assert u.text == " ".join(DIGIT_WORDS[int(d)] for d in digits)
            info = sf.info(u.audio)
            assert (info.samplerate, info.channels, info.subtype) == (TARGET_SAMPLE_RATE, 1, "PCM_16")
            # duration = takes (exactly doubled by 8->16 kHz) + edge and gap silences
            speech = sum(2 * sf.info(str(rec / f"{s}.wav")).frames for s in stems)
            silence = (info.frames - speech) / TARGET_SAMPLE_RATE
            gaps = len(stems) - 1
            lo = 2 * EDGE_SECONDS[0] + gaps * GAP_SECONDS[0]
            hi = 2 * EDGE_SECONDS[1] + gaps * GAP_SECONDS[1]
            assert lo - 1e-3 <= silence <= hi + 1e-3, (u.utt_id, silence, lo, hi)
            # levels are kept (no per-take normalisation), and the silences really are silent
            x, _ = sf.read(u.audio)
            assert 0.25 < np.abs(x).max() < 0.36
            assert np.abs(x[: round(EDGE_SECONDS[0] * TARGET_SAMPLE_RATE)]).max() == 0
        durs = read_kv(data / name / "utt2dur")
        assert all(abs(float(durs[u.utt_id]) - sf.info(u.audio).duration) < 1e-3 for u in utts)


def test_fsdd_is_deterministic_and_sets_are_independent(fake_fsdd: Path, tmp_path: Path) -> None:
    def run(out: str, seed: int, num_train: int) -> dict[str, str]:
        prepare_fsdd(fake_fsdd, tmp_path / out, tmp_path / f"{out}_wav", num_train, 4, 4, seed=seed)
        return {s: (tmp_path / out / s / "utt2takes").read_text() for s in ("train", "dev", "test")}

    a, b = run("a", 0, 10), run("b", 0, 10)
    assert a == b
    assert (tmp_path / "a/train/utt2dur").read_text() == (tmp_path / "b/train/utt2dur").read_text()
    c = run("c", 0, 12)  # another train size leaves dev/test alone
    assert (c["dev"], c["test"]) == (a["dev"], a["test"])
    assert run("d", 1, 10)["train"] != a["train"]


def test_fsdd_single_set_uses_every_take_once(fake_fsdd: Path, tmp_path: Path) -> None:
    sets = prepare_fsdd(fake_fsdd, tmp_path / "data", tmp_path / "wav", single_set="extra")
    assert list(sets) == ["extra"] and sorted(p.name for p in (tmp_path / "data").iterdir()) == ["extra"]
    assert validate_data_dir(tmp_path / "data/extra") == []
    used = [s for stems in _takes(tmp_path / "data/extra").values() for s in stems]
    assert all(MIN_TAKES_PER_UTT <= len(v) <= MAX_TAKES_PER_UTT for v in _takes(tmp_path / "data/extra").values())
    readable = len(FAKE_SPEAKERS) * len(FAKE_DIGITS) * len(FAKE_TAKES) - 1  # minus the corrupt one
    assert len(used) == len(set(used)) == readable
    assert all(u.utt_id.split("-")[1] == "extra" for u in sets["extra"])


def test_fsdd_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="recordings"):
        prepare_fsdd(tmp_path / "absent", tmp_path / "d", tmp_path / "w")
    only_test = make_fake_fsdd(tmp_path / "only_test", takes=range(5))
    with pytest.raises(ValueError, match="single-set"):
        prepare_fsdd(only_test, tmp_path / "d", tmp_path / "w", num_train=5, num_dev=0, num_test=0)
    stereo = make_fake_fsdd(tmp_path / "stereo", takes=range(5))
    _write_tone(stereo / "recordings/1_alice_3.wav", 900, 300.0, seed=0, channels=2)
    caplog.set_level(logging.WARNING)
    sets = prepare_fsdd(stereo, tmp_path / "d", tmp_path / "w", single_set="x")  # the stereo take is named, the rest used
    assert re.search(r"1_alice_3.wav.*2 channels", caplog.text) and "1 of " in caplog.text
    used = {s for stems in _takes(tmp_path / "d/x").values() for s in stems}
    assert "1_alice_3" not in used and len(used) == len(FAKE_SPEAKERS) * len(FAKE_DIGITS) * 5 - 1
    assert sets["x"]
    with pytest.raises(ValueError, match="set name"):
        prepare_fsdd(only_test, tmp_path / "d", tmp_path / "w", single_set="a b")


def test_fsdd_cli(fake_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--fsdd-dir", str(fake_fsdd), "--data-dir", str(tmp_path / "data"), "--audio-dir", str(tmp_path / "wav")]
    assert fsdd.main(args + ["--num-train", "5", "--num-dev", "2", "--num-test", "2"]) == 0
    assert len(read_data_dir(tmp_path / "data/train")) == 5
    missing = ["--fsdd-dir", str(tmp_path / "absent"), "--download-dir", str(tmp_path / "dl"), "--no-download"]
    assert fsdd.main(missing) == 1
    assert "not found" in capsys.readouterr().err


def test_default_dirs_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(fsdd.SHARED_DATA_ENV, str(tmp_path))
    assert fsdd.default_fsdd_dir() == tmp_path / "fsdd" and yesno.default_yesno_dir() == tmp_path / "yesno"
    monkeypatch.delenv(fsdd.SHARED_DATA_ENV)
    repo_root = Path(fsdd.__file__).resolve().parents[2]
    assert fsdd.default_fsdd_dir() == repo_root.parent / "shared" / "data" / "fsdd"


def test_downloads_fail_clearly_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git: command not found")

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(subprocess, "run", no_git)
    with pytest.raises(DownloadError, match=r"recordings/\{digit\}_\{speaker\}_\{take\}\.wav"):
        fsdd.download_fsdd(tmp_path / "fsdd")
    assert not (tmp_path / "fsdd").exists() and list(tmp_path.iterdir()) == []  # no half clone left behind
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DownloadError, match="waves_yesno"):
        yesno.download_yesno(tmp_path / "yesno")
    assert list(tmp_path.iterdir()) == []


def test_yesno_fake(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    root, names = make_fake_yesno(tmp_path / "yesno")
    corrupt = names[8]  # lands in test
    (root / "waves_yesno" / corrupt).write_bytes(b"RIFF broken")
    sets = prepare_yesno(root, tmp_path / "data", tmp_path / "wav")
    assert "maybe.wav" in caplog.text and corrupt in caplog.text and "README" not in caplog.text
    stems = [n[:-4] for n in names]
    # Kaldi's split (first half train, second half test) with the end of the train half as dev
    assert [u.utt_id for u in sets["train"]] == stems[:5]
    assert [u.utt_id for u in sets["dev"]] == stems[5:6]
    assert [u.utt_id for u in sets["test"]] == [s for s in stems[6:] if s != corrupt[:-4]]
    for name, utts in sets.items():
        assert validate_data_dir(tmp_path / "data" / name) == []
        for u in utts:
            assert u.speaker == "global"
            assert u.text == " ".join("yes" if c == "1" else "no" for c in u.utt_id.split("_"))
            info = sf.info(u.audio)
            src = sf.info(str(root / "waves_yesno" / f"{u.utt_id}.wav"))
            assert info.samplerate == TARGET_SAMPLE_RATE and info.frames == 2 * src.frames


def test_yesno_official_split_sizes() -> None:
    names = [f"{i:06b}" for i in range(60)]
    parts = yesno.split_names(names)
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [25, 5, 30]
    assert parts["train"] + parts["dev"] + parts["test"] == sorted(names)


# ---------------------------------------------------------------------------------------------------------------------
# Real data (../shared/data or $NARSPEECH_SHARED_DATA); skipped for users without it.


def _real(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set {fsdd.SHARED_DATA_ENV} to the folder holding it)")
    return path


def test_real_fsdd(tmp_path: Path) -> None:
    root = _real(fsdd.default_fsdd_dir())
    sets = prepare_fsdd(root, tmp_path / "data", tmp_path / "wav", num_train=0, num_dev=8, num_test=12)
    assert sorted(sets) == ["dev", "test"]
    for name in sets:
        assert validate_data_dir(tmp_path / "data" / name) == []
        for stems in _takes(tmp_path / "data" / name).values():
            assert {split_of_take(int(s.split("_")[2])) for s in stems} == {name}
    assert {u.speaker for u in sets["test"]} <= {"jackson", "lucas", "theo", "yweweler"}
    assert sf.info(sets["test"][0].audio).samplerate == TARGET_SAMPLE_RATE


def test_real_yesno(tmp_path: Path) -> None:
    root = _real(yesno.default_yesno_dir())
    sets = prepare_yesno(root, tmp_path / "data", tmp_path / "wav")
    assert {k: len(v) for k, v in sets.items()} == {"train": 25, "dev": 5, "test": 30}
    for name in sets:
        assert validate_data_dir(tmp_path / "data" / name) == []
    u = sets["test"][0]
    assert len(u.text.split()) == 8 and sf.info(u.audio).samplerate == TARGET_SAMPLE_RATE
