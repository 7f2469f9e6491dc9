"""The offline demo corpus: sentence grammar, the espeak-ng driver and ``prepare_mini`` end to end (tiny sizes)."""

from __future__ import annotations

import multiprocessing
import re

import numpy as np
import pytest
import soundfile as sf

from narspeech.data.kaldi import read_data_dir, validate_data_dir
from narspeech.recipes import espeak, mini, synth

_ok, _why = espeak.is_available()
needs_espeak = pytest.mark.skipif(not _ok, reason=f"espeak-ng from espeakng-loader cannot be used here: {_why}")


# ---- sentences ---------------------------------------------------------------------------------------------------
def test_sentences_deterministic_unique_and_well_formed() -> None:
    a = mini.generate_sentences(500, seed=3)
    assert a == mini.generate_sentences(500, seed=3)
    assert a != mini.generate_sentences(500, seed=4)
    assert len(set(a)) == len(a)
    # a longer stream starts with the shorter one, so growing train never moves dev/test
    assert mini.generate_sentences(600, seed=3)[:500] == a
    vocab = mini.vocabulary()
    assert 150 <= len(vocab) <= 250
    for s in a:
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", s), s
        assert mini.MIN_WORDS <= len(s.split()) <= mini.MAX_WORDS, s
        assert set(s.split()) <= vocab, s
    assert not any(" a " + v in " " + s for s in a for v in "aeiou"), "'a' before a vowel should be 'an'"


def test_splits_disjoint_by_sentence() -> None:
    sets = mini.split_sentences(300, 40, 30, seed=1)
    assert [len(sets[s]) for s in ("train", "dev", "test")] == [300, 40, 30]
    texts = {s: {t for _, t in v} for s, v in sets.items()}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    # dev/test do not depend on the size of train
    assert mini.split_sentences(100, 40, 30, seed=1)["test"] == sets["test"]
    # the optional eval set comes after train and leaves the other three as they were
    with_eval = mini.split_sentences(300, 40, 30, seed=1, num_eval=50)
    assert {s: with_eval[s] for s in sets} == sets and len(with_eval["eval"]) == 50
    eval_texts = {t for _, t in with_eval["eval"]}
    assert len(eval_texts) == 50 and not eval_texts & set().union(*texts.values())
    assert min(i for i, _ in with_eval["eval"]) == 1 + max(i for i, _ in sets["train"])


def test_speakers_are_distinct_and_valid() -> None:
    ids = [s.id for s in mini.SPEAKERS]
    assert len(set(ids)) == len(ids) and len({s.voice for s in mini.SPEAKERS}) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9]+", i) for i in ids)  # no '-', which separates speaker and index in utt ids


# ---- espeak driver -----------------------------------------------------------------------------------------------
@needs_espeak
def test_synthesize_speech_like() -> None:
    wave = espeak.synthesize("the small red cat sees two green boxes", "en-us+f3", rate=160, pitch=50)
    assert wave.dtype == np.float32 and wave.ndim == 1
    seconds = len(wave) / espeak.SAMPLE_RATE
    assert 1.0 < seconds < 5.0  # 8 words at 160 words per minute is about 3 s
    assert np.abs(wave).max() <= 1.0
    assert np.sqrt(np.mean(wave**2)) > 0.01  # not silence
    faster = espeak.synthesize("the small red cat sees two green boxes", "en-us+f3", rate=320, pitch=50)
    assert len(faster) < 0.8 * len(wave)


@needs_espeak
def test_all_speaker_voices_exist() -> None:
    for spk in mini.SPEAKERS:
        assert len(espeak.synthesize("hello", spk.voice, spk.rate, spk.pitch)) > 0, spk


@needs_espeak
def test_bad_voice_and_parameters_are_clear_errors() -> None:
    with pytest.raises(espeak.EspeakError, match="no voice"):
        espeak.synthesize("hello", "no-such-voice")
    with pytest.raises(ValueError, match="rate"):
        espeak.synthesize("hello", "en-us", rate=10)
    assert len(espeak.synthesize("hello", "en-us")) > 0  # the failed voice change left the engine usable


def test_unloadable_library_is_a_clear_error(monkeypatch) -> None:
    import espeakng_loader

    monkeypatch.setattr(espeak, "_engine", None)  # force a fresh load; the real engine comes back afterwards
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    with pytest.raises(espeak.EspeakError, match="cannot load the espeak-ng library"):
        espeak.synthesize("hello")
    ok, why = espeak.is_available()
    assert not ok and "/nonexistent/libespeak-ng.so" in why


def _synth_len(text: str) -> int:
    return len(espeak.synthesize(text, "en-us+m3", 170, 50))


@needs_espeak
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_synthesize_in_worker_processes(method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method!r} start method on this platform")
    espeak.synthesize("warm up", "en-us")  # an initialized parent must not break forked children
    with multiprocessing.get_context(method).Pool(2) as pool:
        lengths = pool.map(_synth_len, ["one two three", "four five six seven"])
    assert all(n > 0 for n in lengths)


# ---- prepare_mini --------------------------------------------------------------------------------------------------
@needs_espeak
def test_prepare_mini_tiny(tmp_path) -> None:
    data, audio = tmp_path / "data", tmp_path / "wav"
    sets = mini.prepare_mini(data, audio, num_train=6, num_dev=3, num_test=3, seed=0, nj=1)
    assert {k: len(v) for k, v in sets.items()} == {"train": 6, "dev": 3, "test": 3}
    for split in ("train", "dev", "test"):
        assert validate_data_dir(data / split) == []
        utts = read_data_dir(data / split)
        assert [u.utt_id for u in utts] == sorted(u.utt_id for u in sets[split])
        for u in utts:
            assert u.utt_id.startswith(u.speaker + "-") and u.audio.startswith(str(tmp_path))
            info = sf.info(u.audio)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            assert 0.5 < info.duration < 6.0
        durs = dict(line.split() for line in (data / split / "utt2dur").read_text().splitlines())
        assert set(durs) == {u.utt_id for u in utts}
    texts = [{u.text for u in v} for v in sets.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert not list(audio.glob("*.tmp"))

    # a second run reuses every wav; a different seed (other texts under the same ids) regenerates them
    mtimes = {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav")}
    mini.prepare_mini(data, audio, num_train=6, num_dev=3, num_test=3, seed=0, nj=1)
    assert {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav")} == mtimes
    mini.prepare_mini(data, audio, num_train=6, num_dev=3, num_test=3, seed=1, nj=1)
    changed = [p.name for p in audio.glob("*.wav") if p.stat().st_mtime_ns != mtimes[p.name]]
    assert len(changed) == len(mtimes)

    # --num-eval adds data/eval (valid, own sentences) and regenerates none of the wavs already there
    mtimes = {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav")}
    sets = mini.prepare_mini(data, audio, num_train=6, num_dev=3, num_test=3, seed=1, nj=1, num_eval=4)
    assert len(sets["eval"]) == 4 and validate_data_dir(data / "eval") == []
    assert {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav") if p.name in mtimes} == mtimes
    assert not {u.text for u in sets["eval"]} & {u.text for s in ("train", "dev", "test") for u in sets[s]}


@needs_espeak
def test_corrupt_wav_is_regenerated(tmp_path) -> None:
    sets = mini.prepare_mini(tmp_path / "data", tmp_path / "wav", 2, 1, 1, seed=0, nj=1)
    victim = sets["train"][0].audio
    with open(victim, "wb") as f:
        f.write(b"not a wav")
    mini.prepare_mini(tmp_path / "data", tmp_path / "wav", 2, 1, 1, seed=0, nj=1)
    assert sf.info(victim).frames > 0


def test_cli_help(capsys) -> None:
    from narspeech.cli import main as cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(["prepare", "mini", "--help"])
    assert e.value.code == 0
    assert "--num-train" in capsys.readouterr().out


def test_negative_size_is_an_error(tmp_path) -> None:
    assert mini.main(["--data-dir", str(tmp_path / "d"), "--audio-dir", str(tmp_path / "w"), "--num-dev", "-1"]) == 1


@needs_espeak
@pytest.mark.slow
def test_prepare_mini_parallel(tmp_path) -> None:
    # enough utterances to take the process-pool path rather than the inline one
    n = synth.WORKER_CHUNK + 4
    sets = mini.prepare_mini(tmp_path / "data", tmp_path / "wav", n, 2, 2, seed=0, nj=2)
    assert validate_data_dir(tmp_path / "data" / "train") == []
    assert len(sets["train"]) == n and len(list((tmp_path / "wav").glob("*.wav"))) == n + 4
