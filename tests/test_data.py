"""Kaldi data dirs (read/write/validate), the bucketing batch sampler, and the ASR dataset + collate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, make_tone_corpus, tone_speech

from narspeech.data.dataset import IGNORE_ID, ASRDataset, collate
from narspeech.data.kaldi import DataDirError, Segment, Utterance, read_data_dir, validate_data_dir, write_data_dir
from narspeech.data.sampler import BucketBatchSampler
from narspeech.text.tokenizer import CharTokenizer

# ---------------------------------------------------------------- data directories

TEXTS = {"spkA-u1": "bad cab", "spkA-u2": "fade", "spkB-u1": "head bag"}


def _wav(path: Path, text: str, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone_speech(text, seed), SR, subtype="PCM_16")
    return str(path)


def _good_utts(root: Path) -> list[Utterance]:
    return [Utterance(u, _wav(root / "wav" / f"{u}.wav", t, i), t, u.split("-")[0]) for i, (u, t) in enumerate(TEXTS.items())]


@pytest.fixture
def good_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    write_data_dir(d, _good_utts(tmp_path))
    return d


@pytest.fixture
def seg_dir(tmp_path) -> Path:
    """Two utterances cut from one 1 s recording (plus a second recording)."""
    rec1 = tmp_path / "rec1.wav"
    sf.write(rec1, np.zeros(SR, dtype=np.float32) + 0.01, SR)
    rec2 = _wav(tmp_path / "rec2.wav", "ace")
    utts = [
        Utterance("rec1-a", str(rec1), "bad", "s1", Segment("rec1", 0.0, 0.4)),
        Utterance("rec1-b", str(rec1), "cab", "s1", Segment("rec1", 0.5, 1.0)),
        Utterance("rec2-a", rec2, "ace", "s2", Segment("rec2", 0.1, -1)),
    ]
    d = tmp_path / "segdata"
    write_data_dir(d, utts)
    return d


def _lines(p: Path) -> list[str]:
    return p.read_text(encoding="utf-8").splitlines()


def _write_lines(p: Path, lines: list[str]) -> None:
    p.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")


def _assert_problem(d: Path, file: str, utt: str) -> str:
    """validate_data_dir reports a problem naming ``file`` and ``utt``; read_data_dir (audio unchecked) or the
    audio check raises/reports too."""
    problems = validate_data_dir(d)
    assert problems, f"{d} should be invalid"
    hits = [p for p in problems if file in p and utt in p]
    assert hits, f"no problem names {file} and {utt!r}: {problems}"
    return hits[0]


def test_write_read_round_trip(tmp_path, good_dir):
    utts = _good_utts(tmp_path)
    assert sorted(p.name for p in good_dir.iterdir()) == ["spk2utt", "text", "utt2spk", "wav.scp"]
    assert read_data_dir(good_dir) == sorted(utts, key=lambda u: u.utt_id)
    assert _lines(good_dir / "spk2utt") == ["spkA spkA-u1 spkA-u2", "spkB spkB-u1"]
    assert validate_data_dir(good_dir) == []


def test_write_read_round_trip_with_segments(seg_dir):
    utts = read_data_dir(seg_dir)
    assert [u.utt_id for u in utts] == ["rec1-a", "rec1-b", "rec2-a"]
    assert utts[1].segment == Segment("rec1", 0.5, 1.0)
    assert utts[2].segment == Segment("rec2", 0.1, -1)
    assert utts[0].audio == utts[1].audio and utts[0].audio.endswith("rec1.wav")
    assert [ln.split()[0] for ln in _lines(seg_dir / "wav.scp")] == ["rec1", "rec2"]
    assert validate_data_dir(seg_dir) == []
    # rewriting without segments removes a stale segments file
    write_data_dir(seg_dir, [Utterance(u.utt_id, u.audio, u.text, u.speaker) for u in utts])
    assert not (seg_dir / "segments").exists()
    assert all(u.segment is None for u in read_data_dir(seg_dir))


def test_write_rejects_bad_input(tmp_path):
    u = Utterance("a", "a.wav", "x", "s")
    with pytest.raises(DataDirError, match="duplicate"):
        write_data_dir(tmp_path / "d1", [u, u])
    with pytest.raises(DataDirError, match="white space"):
        write_data_dir(tmp_path / "d2", [Utterance("a b", "a.wav", "x", "s")])
    with pytest.raises(DataDirError, match="segment"):
        write_data_dir(tmp_path / "d3", [u, Utterance("b", "r.wav", "y", "s", Segment("r", 0, 1))])


def test_read_without_text(good_dir):
    (good_dir / "text").unlink()
    with pytest.raises(DataDirError, match="no text"):
        read_data_dir(good_dir)
    assert all(u.text is None for u in read_data_dir(good_dir, require_text=False))
    assert validate_data_dir(good_dir, require_text=False) == []


def test_unsorted_wav_scp(good_dir):
    lines = _lines(good_dir / "wav.scp")
    _write_lines(good_dir / "wav.scp", [lines[1], lines[0], lines[2]])
    msg = _assert_problem(good_dir, "wav.scp", "spkA-u1")
    assert "sort" in msg


def test_duplicate_id(good_dir):
    lines = _lines(good_dir / "text")
    _write_lines(good_dir / "text", [lines[0], lines[0], *lines[1:]])
    msg = _assert_problem(good_dir, "text", "spkA-u1")
    assert "duplicate" in msg
    with pytest.raises(DataDirError, match="duplicate"):
        read_data_dir(good_dir)


def test_text_without_audio(good_dir):
    _write_lines(good_dir / "text", _lines(good_dir / "text") + ["spkC-u9 orphan"])
    msg = _assert_problem(good_dir, "text", "spkC-u9")
    assert "no audio" in msg


def test_utterance_without_text(good_dir):
    _write_lines(good_dir / "text", [ln for ln in _lines(good_dir / "text") if not ln.startswith("spkA-u2 ")])
    msg = _assert_problem(good_dir, "text", "spkA-u2")
    assert "transcript" in msg
    with pytest.raises(DataDirError, match="spkA-u2"):
        read_data_dir(good_dir)


def test_utterance_without_speaker(good_dir):
    _write_lines(good_dir / "utt2spk", [ln for ln in _lines(good_dir / "utt2spk") if not ln.startswith("spkB-u1 ")])
    msg = _assert_problem(good_dir, "utt2spk", "spkB-u1")
    assert "speaker" in msg


def test_missing_audio_file(good_dir, tmp_path):
    (tmp_path / "wav" / "spkA-u2.wav").unlink()
    _assert_problem(good_dir, "wav.scp", "spkA-u2")
    # reading the dir does not open audio; only validation with check_audio does
    assert len(read_data_dir(good_dir)) == 3
    assert validate_data_dir(good_dir, check_audio=False) == []


def test_corrupt_audio_file(good_dir, tmp_path):
    (tmp_path / "wav" / "spkB-u1.wav").write_bytes(b"RIFF\x00\x01garbage" + bytes(range(256)) * 4)
    msg = _assert_problem(good_dir, "wav.scp", "spkB-u1")
    assert "spkB-u1.wav" in msg  # the audio path too


def test_segment_after_end_of_recording(seg_dir):
    lines = _lines(seg_dir / "segments")
    _write_lines(seg_dir / "segments", [lines[0], "rec1-b rec1 0.500 1.500", lines[2]])
    msg = _assert_problem(seg_dir, "segments", "rec1-b")
    assert "1.50" in msg
    assert validate_data_dir(seg_dir, check_audio=False) == []


def test_segment_non_numeric_time(seg_dir):
    lines = _lines(seg_dir / "segments")
    _write_lines(seg_dir / "segments", ["rec1-a rec1 0.0 end", *lines[1:]])
    msg = _assert_problem(seg_dir, "segments", "rec1-a")
    assert "number" in msg
    with pytest.raises(DataDirError, match="rec1-a"):
        read_data_dir(seg_dir)


@pytest.mark.parametrize(
    "line, what",
    [("rec1-b rec1 0.8 0.5", "bad times"), ("rec1-b rec9 0.0 0.5", "not in wav.scp"), ("rec1-b rec1 0.5", "expected")],
)
def test_segment_other_errors(seg_dir, line, what):
    lines = _lines(seg_dir / "segments")
    _write_lines(seg_dir / "segments", [lines[0], line, lines[2]])
    msg = _assert_problem(seg_dir, "segments", "rec1-b")
    assert what in msg


def test_spk2utt_inconsistent(good_dir):
    _write_lines(good_dir / "spk2utt", ["spkA spkA-u1", "spkB spkA-u2 spkB-u1"])
    _assert_problem(good_dir, "spk2utt", "spkA-u2")


def test_piped_wav_scp(good_dir):
    lines = _lines(good_dir / "wav.scp")
    _write_lines(good_dir / "wav.scp", [lines[0], "spkA-u2 sox in.sph -t wav - |", lines[2]])
    msg = _assert_problem(good_dir, "wav.scp", "spkA-u2")
    assert "pipe" in msg
    with pytest.raises(DataDirError, match="pipe"):
        read_data_dir(good_dir)


def test_empty_value_and_not_a_dir(good_dir, tmp_path):
    _write_lines(good_dir / "utt2spk", ["spkA-u1 spkA", "spkA-u2", "spkB-u1 spkB"])
    _assert_problem(good_dir, "utt2spk", "spkA-u2")
    problems = validate_data_dir(tmp_path / "nope")
    assert problems and "wav.scp" in problems[0]


def test_validate_cli(good_dir, tmp_path, capsys):
    from narspeech.bin import validate

    assert validate.main([str(good_dir)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "other" / "bad"
    write_data_dir(bad, _good_utts(tmp_path / "other"))
    (tmp_path / "other" / "wav" / "spkA-u1.wav").unlink()
    assert validate.main([str(good_dir), str(bad)]) == 1
    out = capsys.readouterr()
    assert f"{good_dir}: OK" in out.out and f"{bad}: OK" not in out.out
    assert "spkA-u1" in out.err and str(bad / "wav.scp") in out.err
    assert validate.main(["--no-audio", str(bad)]) == 0


# ---------------------------------------------------------------- sampler

LENGTHS = [int(x) for x in np.random.default_rng(0).integers(20, 400, size=203)] + [2000]  # one item > max_frames
MAX_FRAMES = 1500


def _check_batches(batches: list[list[int]], lengths: list[int], max_frames: int) -> None:
    for b in batches:
        assert b, "empty batch"
        longest = max(lengths[i] for i in b)
        assert longest * len(b) <= max_frames or len(b) == 1, (b, longest)


def test_sampler_covers_every_index_once_within_budget():
    s = BucketBatchSampler(LENGTHS, MAX_FRAMES, seed=3)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(LENGTHS)))
        _check_batches(batches, LENGTHS, MAX_FRAMES)
        assert [len(LENGTHS) - 1] in batches  # the over-long item is alone
    # batches are length-bucketed: much less padding than random batching would give
    padded = sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)
    assert padded < 1.3 * sum(LENGTHS)


def test_sampler_epoch_order_is_reproducible():
    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        s = BucketBatchSampler(LENGTHS, MAX_FRAMES, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert epoch_batches(0, 1) == epoch_batches(0, 1)
    assert epoch_batches(0, 1) != epoch_batches(0, 2)
    assert epoch_batches(0, 1) != epoch_batches(1, 1)
    # no shuffle: deterministic whatever the epoch
    s = BucketBatchSampler(LENGTHS, MAX_FRAMES, shuffle=False)
    first = list(s)
    s.set_epoch(5)
    assert list(s) == first


def test_sampler_replicas_disjoint_and_equal():
    for epoch in range(3):
        per_rank = []
        for rank in range(2):
            s = BucketBatchSampler(LENGTHS, MAX_FRAMES, seed=0, num_replicas=2, rank=rank)
            s.set_epoch(epoch)
            per_rank.append(list(s))
            assert len(per_rank[-1]) == len(s)
        assert len(per_rank[0]) == len(per_rank[1]) > 0
        items = [{i for b in batches for i in b} for batches in per_rank]
        assert not items[0] & items[1]
        # at most one batch (world_size - 1) is dropped
        full = BucketBatchSampler(LENGTHS, MAX_FRAMES, seed=0)
        full.set_epoch(epoch)
        assert len(full) - 2 * len(per_rank[0]) in (0, 1)
        for batches in per_rank:
            _check_batches(batches, LENGTHS, MAX_FRAMES)


def test_sampler_too_few_batches_for_replicas():
    s = BucketBatchSampler([10, 10], 100, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="ranks"):
        list(s)
    with pytest.raises(ValueError, match="max_frames"):
        BucketBatchSampler([10], 0)


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_sampler_resume_mid_epoch(num_replicas):
    s = BucketBatchSampler(LENGTHS, MAX_FRAMES, seed=7, num_replicas=num_replicas, rank=num_replicas - 1)
    s.set_epoch(4)
    full = list(s)
    assert len(full) > 5
    for k in (0, 1, 5, len(full) - 1, len(full), len(full) + 3):
        s.set_epoch(4, start_batch=k)
        tail = list(s)
        assert tail == full[k:]
        assert len(s) == len(tail)
    s.set_epoch(5)  # a new epoch starts from its first batch again
    assert s.start_batch == 0 and len(list(s)) == len(s)


# ---------------------------------------------------------------- dataset + collate

DS_TEXTS = ["bad cab", "fade", "head bag face"]


@pytest.fixture(scope="module")
def tone_dir(tmp_path_factory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("ds"), DS_TEXTS, "train")


@pytest.fixture(scope="module")
def tok() -> CharTokenizer:
    return CharTokenizer(CharTokenizer.build_token_list(DS_TEXTS))


def test_dataset_and_collate_shapes(tone_dir, tok):
    utts = read_data_dir(tone_dir)
    ds = ASRDataset(utts, tok)
    assert len(ds) == 3
    examples = [ds[i] for i in range(len(ds))]
    for i, (u, ex) in enumerate(zip(utts, examples)):
        assert ex.utt_id == u.utt_id
        assert ex.feats.dtype == torch.float32 and ex.feats.shape[1] == 80
        assert ex.feats.shape[0] == ds.num_frames(i)  # header-based estimate is exact at speed 1.0
        assert ex.tokens.dtype == torch.long and ex.tokens.tolist() == tok.encode(u.text)
        assert torch.isfinite(ex.feats).all()
    batch = collate(examples)
    T = max(e.feats.shape[0] for e in examples)
    L = max(e.tokens.numel() for e in examples)
    assert batch["utt_ids"] == [u.utt_id for u in utts]
    assert batch["feats"].shape == (3, T, 80)
    assert batch["feat_lens"].tolist() == [e.feats.shape[0] for e in examples]
    assert batch["tokens"].shape == (3, L)
    assert batch["token_lens"].tolist() == [len(tok.encode(t)) for t in DS_TEXTS]
    for b, e in enumerate(examples):
        n, m = e.feats.shape[0], e.tokens.numel()
        assert torch.equal(batch["feats"][b, :n], e.feats)
        assert (batch["feats"][b, n:] == 0).all()
        assert torch.equal(batch["tokens"][b, :m], e.tokens)
        assert (batch["tokens"][b, m:] == IGNORE_ID).all()
    assert (batch["tokens"] == IGNORE_ID).any()  # texts differ in length, so there is padding


def test_dataset_without_text(tone_dir, tok):
    utts = [Utterance(u.utt_id, u.audio, None, u.speaker) for u in read_data_dir(tone_dir)]
    ex = ASRDataset(utts, tok)[0]
    assert ex.tokens.numel() == 0 and ex.tokens.dtype == torch.long


def test_dataset_segment(tone_dir, tok):
    u = read_data_dir(tone_dir)[0]
    seg = Utterance("seg", u.audio, "bad", u.speaker, Segment("r", 0.1, 0.6))
    ds = ASRDataset([seg], tok)
    assert ds.durations == [pytest.approx(0.5)]
    assert ds[0].feats.shape[0] == ds.num_frames(0) == 48


def test_dataset_randomness_is_seeded_by_epoch_and_index(tone_dir, tok):
    utts = read_data_dir(tone_dir)

    def feats(epoch: int, i: int, seed: int = 0) -> torch.Tensor:
        ds = ASRDataset(utts, tok, speed_factors=(0.9, 1.0, 1.1), seed=seed, dither=1.0)
        ds.set_epoch(epoch)
        return ds[i].feats

    # identical for the same (seed, epoch, index), in a fresh dataset (as in another worker or after a resume)
    for i in range(len(utts)):
        assert torch.equal(feats(0, i), feats(0, i))
    # dither (and usually the speed factor) differ between epochs
    epochs = [feats(e, 0) for e in range(4)]
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(epochs, epochs[1:]))
    # speed perturbation changes the number of frames across epochs for some epoch
    lens = {feats(e, 2).shape[0] for e in range(8)}
    assert len(lens) > 1
    # without perturbation or dither the features do not depend on the epoch
    ds = ASRDataset(utts, tok)
    a = ds[1].feats
    ds.set_epoch(3)
    assert torch.equal(a, ds[1].feats)


def test_dataset_subset_keeps_settings_and_durations(tmp_path):
    from conftest import make_tone_corpus

    from narspeech.data.dataset import ASRDataset
    from narspeech.data.kaldi import read_data_dir

    d = make_tone_corpus(tmp_path, ["bad cab", "fade", "head bad cab"], "s")
    ds = ASRDataset(read_data_dir(d), None, speed_factors=(0.9, 1.1), seed=3, dither=1.0)
    sub = ds.subset([2, 0])
    assert [u.utt_id for u in sub.utts] == ["s-002", "s-000"]
    assert sub.durations == [ds.durations[2], ds.durations[0]]
    assert (sub.speed_factors, sub.seed, sub.dither) == (ds.speed_factors, ds.seed, ds.dither)
    assert len(ds) == 3
    plain = ASRDataset(read_data_dir(d), None)  # no random perturbation: an item's features depend only on its audio
    assert torch.equal(plain.subset([2, 0])[0].feats, plain[2].feats)
