"""``narspeech prepare an4`` on a tiny stand-in of the AN4 layout (and on the real corpus when it is present)."""

from __future__ import annotations

import io
import logging
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SHARED_DATA
from narspeech.data.kaldi import read_data_dir, validate_data_dir
from narspeech.recipes import an4
from narspeech.recipes.fsdd import DownloadError

SPEAKERS = {"train": ["fash", "fbbh", "fclc", "mcen"], "test": ["fcaw", "mjgm"]}
WORDS = ["YES", "NO", "ERASE", "RUBOUT", "A B C", "TWO SIX", "ENTER FIVE"]


def make_fake_an4(root: Path, suffix: str = ".wav", sample_rate: int = 16000) -> Path:
    """An AN4-shaped folder: 3 utterances per speaker, train lines wrapped in <s> .. </s> as in the corpus."""
    rng = np.random.default_rng(0)
    (root / "etc").mkdir(parents=True)
    for part, sub in (("train", "an4_clstk"), ("test", "an4test_clstk")):
        fileids, lines = [], []
        for s_i, spk in enumerate(SPEAKERS[part]):
            for k in range(3):
                source = f"an{100 + 10 * s_i + k}-{spk}-b"
                words = WORDS[(s_i + k) % len(WORDS)]
                (root / "wav" / sub / spk).mkdir(parents=True, exist_ok=True)
                x = (0.1 * rng.standard_normal(int(0.5 * sample_rate))).astype(np.float32)
                fmt = {"wav": "WAV", "sph": "NIST", "flac": "FLAC"}[suffix[1:]]
                sf.write(root / "wav" / sub / spk / f"{source}{suffix}", x, sample_rate, format=fmt, subtype="PCM_16")
                fileids.append(f"{sub}/{spk}/{source}")
                lines.append(f"<s> {words} </s> ({source})" if part == "train" else f"{words} ({source})")
        (root / "etc" / f"an4_{part}.fileids").write_text("\n".join(fileids) + "\n")
        (root / "etc" / f"an4_{part}.transcription").write_text("\n".join(lines) + "\n")
    return root


def test_text_normalisation_as_espnet():
    assert an4.normalize_text("<s> RUBOUT G M E F THREE NINE </s>") == "RUBOUT G M E F THREE NINE"
    assert an4.normalize_text("ERASE  C Q") == "ERASE C Q"


def test_prepare_an4_sets_ids_and_whole_speaker_dev(tmp_path: Path) -> None:
    root = make_fake_an4(tmp_path / "an4")
    sets = an4.prepare_an4(root, tmp_path / "data", tmp_path / "wav", num_dev=3, seed=0)
    assert sorted(sets) == ["dev", "test", "train"]
    for name in sets:
        assert validate_data_dir(tmp_path / "data" / name) == []
    train_spk = {u.speaker for u in sets["train"]}
    dev_spk = {u.speaker for u in sets["dev"]}
    assert len(dev_spk) == 1 and not train_spk & dev_spk and train_spk | dev_spk == set(SPEAKERS["train"])
    assert {u.speaker for u in sets["test"]} == set(SPEAKERS["test"])
    u = read_data_dir(tmp_path / "data" / "train")[0]
    assert u.utt_id == f"{u.speaker}-{u.utt_id.split('-')[1]}-b" and "<s>" not in u.text and u.text == u.text.upper()
    assert Path(u.audio).is_absolute() and Path(u.audio).parent.parent.name == "an4_clstk"  # used in place
    assert not (tmp_path / "wav").exists()
    # another seed holds out another speaker; num_dev 0: no dev set
    other = an4.prepare_an4(root, tmp_path / "d2", tmp_path / "wav", num_dev=3, seed=5)
    assert "dev" in other
    none = an4.prepare_an4(root, tmp_path / "d3", tmp_path / "wav", num_dev=0)
    assert "dev" not in none and len(none["train"]) == 3 * len(SPEAKERS["train"])


def test_sphere_audio_is_converted_with_a_library(tmp_path: Path) -> None:
    root = make_fake_an4(tmp_path / "an4", suffix=".sph")
    sets = an4.prepare_an4(root, tmp_path / "data", tmp_path / "wav", num_dev=0)
    for u in sets["train"] + sets["test"]:
        info = sf.info(u.audio)
        assert u.audio.endswith(".wav") and info.samplerate == 16000 and info.format == "WAV"
    src = sf.read(root / "wav/an4_clstk/fash/an100-fash-b.sph")[0]
    assert np.allclose(sf.read(tmp_path / "wav/fash/an100-fash-b.wav")[0], src, atol=1e-4)


def test_broken_lines_and_files_are_named_and_the_rest_prepared(tmp_path: Path, caplog) -> None:
    root = make_fake_an4(tmp_path / "an4")
    with open(root / "etc/an4_train.transcription", "a") as f:
        f.write("<s> NO ID HERE </s>\n<s> YES </s> (an100-fash-b)\n<s> </s> (an999-fash-b)\n")
    (root / "wav/an4_clstk/fbbh/an110-fbbh-b.wav").write_bytes(b"RIFF junk")  # corrupt
    (root / "wav/an4_clstk/fclc/an121-fclc-b.wav").unlink()  # missing
    sf.write(root / "wav/an4_clstk/mcen/an132-mcen-b.wav", np.zeros((8000, 2), np.float32), 16000)  # stereo
    caplog.set_level(logging.WARNING)
    sets = an4.prepare_an4(root, tmp_path / "data", tmp_path / "wav", num_dev=0)
    log = caplog.text
    assert "an4_train.transcription:13: expected" in log and "an4_train.transcription:14: id 'an100-fash-b' seen" in log
    assert "an999-fash-b' has no words" in log and "no audio for 'an121-fclc-b'" in log
    assert "fbbh-an110-b" in log and "mcen-an132-b" in log and "2 channels" in log
    assert "train: 2 of 11 utterances could not be used" in log and "dev is empty" not in log
    assert len(sets["train"]) == 12 - 1 - 1 - 1


def test_cli_and_download_offline(tmp_path: Path, monkeypatch, capsys) -> None:
    def offline(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    rc = an4.main(["--an4-dir", str(tmp_path / "absent"), "--download-dir", str(tmp_path / "dl"),
                   "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 1 and "could not download AN4" in err and "wav/an4_clstk/<speaker>/<id>.wav" in err
    assert not (tmp_path / "dl" / "an4").exists()  # no half download that would pass for the corpus
    root = make_fake_an4(tmp_path / "an4")
    assert an4.main(["--an4-dir", str(root), "--data-dir", str(tmp_path / "data"), "--num-dev", "3"]) == 0
    assert (tmp_path / "data" / "dev" / "text").is_file()


def test_download_unpacks_the_archive_layout(tmp_path: Path, monkeypatch) -> None:
    """The CMU archive unpacks to an4/{etc,wav} with .sph audio: served from memory here."""
    src = make_fake_an4(tmp_path / "src" / "an4", suffix=".sph")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="an4")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(buf.getvalue()))
    target = an4.download_an4(tmp_path / "dl" / "an4")
    sets = an4.prepare_an4(target, tmp_path / "data", tmp_path / "wav", num_dev=0)
    assert len(sets["test"]) == 3 * len(SPEAKERS["test"])
    with pytest.raises(FileExistsError):
        an4.download_an4(tmp_path / "dl" / "an4")
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w:gz") as tar:
        tar.add(src / "etc" / "an4_test.fileids", arcname="readme.txt")
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(bad.getvalue()))
    with pytest.raises(DownloadError, match="not the AN4 corpus"):
        an4.download_an4(tmp_path / "dl2")
    assert not (tmp_path / "dl2").exists()


@pytest.mark.skipif(not (SHARED_DATA / "an4" / "etc").is_dir(),
                    reason=f"the AN4 corpus is not at {SHARED_DATA / 'an4'} (set NARSPEECH_SHARED_DATA)")
def test_real_an4_counts(tmp_path: Path) -> None:
    sets = an4.prepare_an4(SHARED_DATA / "an4", tmp_path / "data", tmp_path / "wav")
    assert len(sets["train"]) + len(sets["dev"]) == 948 and len(sets["test"]) == 130
    assert len({u.speaker for u in sets["train"] + sets["dev"]}) == 74 and len({u.speaker for u in sets["test"]}) == 10
    assert len(sets["dev"]) >= an4.DEFAULT_NUM_DEV and not list((tmp_path / "wav").glob("**/*.wav"))
