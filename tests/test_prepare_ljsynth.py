"""The ljsynth corpus: text normalization and segmentation, text sources, the split, speakers, phone targets and
``narspeech prepare ljsynth`` end to end on a tiny metadata.csv (always) and on the real LJ Speech transcript (when
the shared data has it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf

from narspeech.data.kaldi import read_data_dir, read_kv, validate_data_dir
from narspeech.recipes import espeak, ljsynth, mini

_ok, _why = espeak.is_available()
needs_espeak = pytest.mark.skipif(not _ok, reason=f"espeak-ng from espeakng-loader cannot be used here: {_why}")
SPLITS = ("train", "dev", "test")
TRANSCRIPT = re.compile(r"[a-z']+( [a-z']+)*")


# ---- normalization ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, expected",
    [
        # LJ001-0007's normalized column: numbers already spelled out, hyphens split, quotes and commas dropped
        ('the earliest book printed with movable types, the Gutenberg, or "forty-two line Bible" of about fourteen '
         "fifty-five,", "the earliest book printed with movable types the gutenberg or forty two line bible of about "
         "fourteen fifty five"),
        ("On the whole the type of this book may be considered the ne-plus-ultra of Gothic type,",
         "on the whole the type of this book may be considered the ne plus ultra of gothic type"),
        ("some of which -- as, that of Jacobus Rubeus -- is scarcely distinguishable",
         "some of which as that of jacobus rubeus is scarcely distinguishable"),
        # abbreviations the normalized column already expanded are ordinary words
        ("Mister Hibbert and Doctor Smith, of Saint Paul's,", "mister hibbert and doctor smith of saint paul's"),
        # apostrophes: inside words and after a plural s are kept, quotation marks (straight or curly) are not
        ("the debtors' yards held O'Connor's boxes", "the debtors' yards held o'connor's boxes"),
        ("'Hush!' he said, 'the Dryad' is here", "hush he said the dryad is here"),
        ("He said \u201cyes\u201d to the king\u2019s men", "he said yes to the king's men"),
        ("Watkins' and the Surgeons' halls; [sic] (here)", "watkins' and the surgeons' halls sic here"),
        # words that merely look like Roman numerals stay
        ("a mix of vivid civil ills in the mill", "a mix of vivid civil ills in the mill"),
        ("  ", ""),
        # skipped: digits, non-ASCII letters, dotted abbreviations and initials, bare tokens espeak-ng expands,
        # Roman numerals (espeak-ng says "roman three")
        ("of about 1455,", None),
        ("At M\u00fcller's execution there was great competition", None),
        ("a habitu\u00e9 of the Fortune of War", None),
        ("printed in black letter, i.e. the letter which", None),
        ("by nine p.m. the yard was empty", None),
        ("a bill was introduced by Mr. Hibbert, and accepted", None),
        ("the Honorable H. G. Bennet, whose vigorous protests", None),
        ("brooms, etc., and a gallon of beer", None),
        ("the mr smith of st pauls", None),
        ("the reign of George III was long", None),
        ("chapter xiv begins here", None),
    ],
)
def test_normalize(raw: str, expected: str | None) -> None:
    assert ljsynth.normalize(raw) == expected


def test_normalized_text_is_what_espeak_reads_letter_for_letter() -> None:
    for text in ("the debtors' yards", "a mix of vivid civil ills"):
        assert TRANSCRIPT.fullmatch(ljsynth.normalize(text))
    assert ljsynth.ESPEAK_EXPANDS >= {"mr", "mrs", "dr", "st", "etc"}


def test_segment_merges_clauses_within_bounds() -> None:
    line = "Printing, then, for our purpose, may be considered as the art of making books by means of movable types."
    # the last clause has 14 words: too long for 12, so only the first three clauses (5 words) make a segment
    assert ljsynth.segment(line) == ["printing then for our purpose"]
    assert ljsynth.segment(line, 5, 14) == [
        "printing then for our purpose",
        "may be considered as the art of making books by means of movable types",
    ]
    assert ljsynth.segment(line, 6, 12) == []  # "printing then for our purpose" is one word short
    lj7 = ('the earliest book printed with movable types, the Gutenberg, or "forty-two line Bible" of about fourteen '
           "fifty-five,")  # fmt: skip
    assert ljsynth.segment(lj7) == [
        "the earliest book printed with movable types the gutenberg",
        "or forty two line bible of about fourteen fifty five",
    ]
    # a skipped clause is a barrier: "he went" (2 words) is not joined to the text after it
    assert ljsynth.segment("He went, at 1455 o'clock, home to bed and slept well") == ["home to bed and slept well"]
    # a dotted abbreviation anywhere drops the line: cut at the dot, "Mr. Smith" would become "smith"
    assert ljsynth.segment("and then, after a long delay, Mr. Smith arrived at the prison gate") == []


# ---- text sources ----------------------------------------------------------------------------------------------------
WORDS = (
    "the old prison stood near a river and many men were kept there for years while the sheriff waited "
    "patiently outside of every gate because nobody could ever find his keys again today"
).split()


def write_metadata(path: Path, num_lines: int, extra: tuple[str, ...] = ()) -> Path:
    """An LJ-format metadata.csv: ``num_lines`` lines of two clauses (5-8 and 6-8 words, so some merge and some do
    not), ids LJ900-0001..., then the ``extra`` lines."""
    lines = []
    for i in range(num_lines):
        a = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5 + i % 4))
        b = " ".join(WORDS[(3 * i + k) % len(WORDS)] for k in range(6 + i % 3))
        lines.append(f"LJ900-{i + 1:04d}|{a}, {b}.|{a.capitalize()}, {b}.")
    lines += extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _code(i: int) -> str:
    """A word unique to ``i`` from letters that never make a Roman numeral."""
    return "".join("bfghjknpqt"[int(d)] for d in f"{i:04d}")


def lines_of(n: int) -> list[tuple[str, str]]:
    """``n`` source lines of two clauses (6 + 7 words: too long to merge) that are unique to the line."""
    return [(f"S{i:04d}", f"alpha beta gamma delta epsilon {_code(i)}, the line called {_code(i)}s is here now")
            for i in range(n)]  # fmt: skip


def test_read_lj_metadata(tmp_path: Path) -> None:
    meta = tmp_path / "metadata.csv"
    meta.write_text("LJ001-0001|Raw, 1455.|Normalized, fourteen fifty-five.\n\nLJ001-0002|a|b\n", encoding="utf-8")
    assert ljsynth.read_lj_metadata(meta) == [("LJ001-0001", "Normalized, fourteen fifty-five."), ("LJ001-0002", "b")]
    meta.write_text("LJ001-0001|only two columns\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"metadata.csv:1: expected 'id\|text\|normalized text'"):
        ljsynth.read_lj_metadata(meta)


def write_fake_wordnet(folder: Path) -> Path:
    """data.noun/data.verb in WordNet 3.0's layout: a license header (lines starting with two spaces), then synsets."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton \"AS IS\"  \n"
    (folder / "data.noun").write_text(
        header
        + '02084071 05 n 01 dog 0 001 @ 02083346 n 0000 | a member of the genus Canis; "the dog barked all night"  \n'
        + "02121620 05 n 01 cat 0 000 | feline mammal usually having thick soft fur  \n",
        encoding="utf-8",
    )
    (folder / "data.verb").write_text(
        header + '00403798 30 v 01 puncture 0 000 | cause to collapse; "puncture an air balloon"; '
        '"he punctured the old tire with a nail"  \n',
        encoding="utf-8",
    )
    return folder


def test_wordnet_examples_are_the_fallback(tmp_path: Path, monkeypatch) -> None:
    wordnet = write_fake_wordnet(tmp_path / "wordnet")
    assert ljsynth.read_wordnet_examples(wordnet) == [
        ("wordnet:noun:02084071:0", "the dog barked all night"),
        ("wordnet:verb:00403798:0", "puncture an air balloon"),
        ("wordnet:verb:00403798:1", "he punctured the old tire with a nail"),
    ]
    monkeypatch.setenv("NARSPEECH_SHARED_DATA", str(tmp_path / "no_shared_data"))
    source, lines = ljsynth.load_source_lines(wordnet_dir=wordnet)
    assert "WordNet" in source and len(lines) == 3
    # an LJ transcript in the shared data folder wins over WordNet
    write_metadata(tmp_path / "no_shared_data" / "lj_text" / "metadata.csv", 3)
    source, lines = ljsynth.load_source_lines(wordnet_dir=wordnet)
    assert "LJ Speech" in source and [i for i, _ in lines] == ["LJ900-0001", "LJ900-0002", "LJ900-0003"]


def test_no_text_source_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("NARSPEECH_SHARED_DATA", str(tmp_path / "no_shared_data"))
    monkeypatch.setattr(ljsynth, "WORDNET_DIR", tmp_path / "no_wordnet")
    with pytest.raises(ljsynth.TextSourceError) as e:
        ljsynth.load_source_lines()
    msg = str(e.value)
    for hint in ("--lj-text", "LJSpeech-1.1/metadata.csv", ljsynth.LJ_URL, "NARSPEECH_SHARED_DATA",
                 "lj_text/metadata.csv", "wordnet-base", str(tmp_path / "no_shared_data")):  # fmt: skip
        assert hint in msg, hint
    # an explicit --lj-text that does not exist is an error, never a silent fallback
    with pytest.raises(ljsynth.TextSourceError, match="nowhere.csv not found"):
        ljsynth.load_source_lines(tmp_path / "nowhere.csv", wordnet_dir=write_fake_wordnet(tmp_path / "wn"))
    # through the CLI: exit status 1 and the message, before any audio is made
    args = ["--data-dir", str(tmp_path / "data"), "--audio-dir", str(tmp_path / "wav")]
    if _ok:
        assert ljsynth.main(args) == 1
        assert "no sentence source for ljsynth" in capsys.readouterr().err
        assert not (tmp_path / "wav").exists()


# ---- split -----------------------------------------------------------------------------------------------------------
def test_split_is_disjoint_deterministic_and_stable() -> None:
    lines = lines_of(300)
    sets = ljsynth.split_sentences(lines, 200, 30, 20, seed=1)
    assert {s: len(v) for s, v in sets.items()} == {"train": 200, "dev": 30, "test": 20}
    texts = {s: [x.text for x in v] for s, v in sets.items()}
    sources = {s: {x.source for x in v} for s, v in sets.items()}
    all_texts = [t for s in SPLITS for t in texts[s]]
    assert len(set(all_texts)) == len(all_texts)  # every segment text occurs once in the corpus
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not sources[a] & sources[b], (a, b)  # no source line feeds two sets
    # indices: test first, then dev, then train, contiguous
    assert [x.index for s in ("test", "dev", "train") for x in sets[s]] == list(range(250))
    assert all(ljsynth.MIN_WORDS <= len(t.split()) <= ljsynth.MAX_WORDS for t in all_texts)
    # deterministic, independent of the file's line order; another seed gives another split
    assert ljsynth.split_sentences(list(reversed(lines)), 200, 30, 20, seed=1) == sets
    assert ljsynth.split_sentences(lines, 200, 30, 20, seed=2)["test"] != sets["test"]
    # growing train leaves dev and test unchanged
    bigger = ljsynth.split_sentences(lines, 260, 30, 20, seed=1)
    assert bigger["test"] == sets["test"] and bigger["dev"] == sets["dev"]
    assert bigger["train"][:200] == sets["train"]


def test_split_dedupes_and_reports_exhaustion() -> None:
    # the same clause in many lines is used once: the first line (in shuffled order) that has it takes it
    lines = [(f"D{i}", f"the same clause in every line, then a unique tail for line {_code(i)}") for i in range(8)]
    sets = ljsynth.split_sentences(lines, 7, 0, 1, seed=0)
    texts = [s.text for v in sets.values() for s in v]
    assert sets["test"][0].text == "the same clause in every line" and texts.count(sets["test"][0].text) == 1
    # the test line's own tail is left out rather than given to train, so 7 other lines' tails fill train
    assert not {s.source for s in sets["train"]} & {sets["test"][0].source} and len(set(texts)) == 8
    with pytest.raises(ValueError, match=r"only 9 distinct segments"):
        ljsynth.split_sentences(lines, 8, 0, 1, seed=0)
    with pytest.raises(ValueError, match=r"only \d+ distinct segments of 5-12 words.*num_train=50"):
        ljsynth.split_sentences(lines, 50, 0, 1)
    with pytest.raises(ValueError, match="num_dev must be >= 0"):
        ljsynth.split_sentences(lines, 1, -1, 1)
    with pytest.raises(ValueError, match="min_words"):
        ljsynth.split_sentences(lines, 1, 1, 1, min_words=9, max_words=5)


# ---- speakers and prosody --------------------------------------------------------------------------------------------
def test_speakers_extend_mini_and_are_distinct() -> None:
    spk = ljsynth.SPEAKERS
    assert spk[: len(mini.SPEAKERS)] == mini.SPEAKERS and len(spk) > len(mini.SPEAKERS)
    assert len({s.id for s in spk}) == len(spk) and len({s.voice for s in spk}) == len(spk)
    assert all(re.fullmatch(r"[a-z0-9]+", s.id) for s in spk)  # '-' separates speaker and index in utt ids
    assert len({s.voice.split("+")[0] for s in spk}) >= 8  # accents
    for i in range(200):
        rate, pitch = ljsynth.prosody_of(i, seed=0)
        base = ljsynth.speaker_of(i)
        assert abs(rate - base.rate) <= base.rate * ljsynth.RATE_JITTER + 1 and abs(pitch - base.pitch) <= 6
        assert ljsynth.prosody_of(i, seed=0) == (rate, pitch)
    assert [ljsynth.prosody_of(i, 0) for i in range(50)] != [ljsynth.prosody_of(i, 1) for i in range(50)]


@needs_espeak
def test_all_speaker_voices_exist() -> None:
    for s in ljsynth.SPEAKERS[len(mini.SPEAKERS) :]:
        lo, hi = s.rate * (1 - ljsynth.RATE_JITTER), s.rate * (1 + ljsynth.RATE_JITTER)
        assert espeak.RATE_RANGE[0] <= lo and hi <= espeak.RATE_RANGE[1], s
        assert len(espeak.synthesize("hello there", s.voice, s.rate, s.pitch)) > 0, s


@needs_espeak
def test_phonemize_follows_the_accent() -> None:
    us = ljsynth.phonemize("the cat sees two boxes", "en-us+f3")
    gb = ljsynth.phonemize("the cat sees two boxes", "en-gb-x-rp+m4")
    assert us == "ðə kæt siːz tuː bɑːksᵻz"  # no stress marks; word boundaries as spaces
    assert gb != us and "ɒ" in gb  # RP "boxes" has the LOT vowel
    # clause by clause through the whole text
    assert ljsynth.phonemize("one. two, three", "en-us").split() == ["wʌn", "tuː", "θɹiː"]


# ---- prepare_ljsynth -------------------------------------------------------------------------------------------------
@needs_espeak
def test_prepare_ljsynth_cli_tiny(tmp_path: Path) -> None:
    from narspeech.cli import main as cli_main

    skipped = "LJ999-0001|x|Mr. Smith, at 1455 o'clock, left."
    meta = write_metadata(tmp_path / "lj" / "metadata.csv", 40, extra=(skipped,))
    data, audio = tmp_path / "data", tmp_path / "wav"
    args = ["prepare", "ljsynth", "--lj-text", str(meta.parent), "--data-dir", str(data), "--audio-dir", str(audio),
            "--num-train", "4", "--num-dev", "1", "--num-test", "1", "--nj", "1"]  # fmt: skip
    assert cli_main(args) == 0
    utts = {}
    for split in SPLITS:
        assert validate_data_dir(data / split) == []
        utts[split] = read_data_dir(data / split)
        src = read_kv(data / split / "utt2src")
        durs = read_kv(data / split / "utt2dur")
        assert set(src) == set(durs) == {u.utt_id for u in utts[split]}
        assert all(s.startswith("LJ900-") for s in src.values())
        for u in utts[split]:
            assert TRANSCRIPT.fullmatch(u.text) and ljsynth.MIN_WORDS <= len(u.text.split()) <= ljsynth.MAX_WORDS
            assert re.fullmatch(r"spk\d\d-\d{6}", u.utt_id) and u.utt_id.startswith(u.speaker + "-")
            info = sf.info(u.audio)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            assert 0.5 < info.duration < 8.0 and abs(info.duration - float(durs[u.utt_id])) < 1e-3
        assert not (data / split / "text.words").exists()
    assert [len(utts[s]) for s in SPLITS] == [4, 1, 1]
    assert len({u.text for v in utts.values() for u in v}) == 6
    assert not list(audio.glob("*.tmp"))

    # phone targets: same audio (reused, not regenerated), IPA transcripts, the words kept in text.words
    mtimes = {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav")}
    assert cli_main([*args, "--targets", "phones"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in audio.glob("*.wav")} == mtimes
    for split in SPLITS:
        assert validate_data_dir(data / split) == []
        words = read_kv(data / split / "text.words")
        assert words == {u.utt_id: u.text for u in utts[split]}
        for u in read_data_dir(data / split):
            assert u.text == ljsynth.phonemize(words[u.utt_id], ljsynth.speaker_of(int(u.utt_id[-6:])).voice)
            assert u.text != words[u.utt_id] and not set(u.text) & set("\u02c8\u02cc")
    # back to characters: text.words goes, since it would describe the old transcripts
    assert cli_main(args) == 0
    assert not (data / "train" / "text.words").exists()
    assert {u.utt_id: u.text for u in read_data_dir(data / "train")} == {u.utt_id: u.text for u in utts["train"]}


def test_cli_errors(tmp_path: Path, capsys) -> None:
    from narspeech.cli import main as cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(["prepare", "ljsynth", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--lj-text" in out and "--targets" in out
    base = ["--data-dir", str(tmp_path / "d"), "--audio-dir", str(tmp_path / "w")]
    assert ljsynth.main([*base, "--num-dev", "-1"]) == 1
    assert "num_dev must be >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="targets must be one of"):
        ljsynth.prepare_ljsynth(tmp_path / "d", tmp_path / "w", 1, 1, 1, targets="words")


# ---- the real LJ Speech transcript -----------------------------------------------------------------------------------
def _real_lj_text() -> Path:
    path = ljsynth.default_lj_text()
    if not path.is_file():
        pytest.skip(f"the LJ Speech transcript is not at {path} (set NARSPEECH_SHARED_DATA to the shared data folder)")
    return path


def test_real_lj_text_default_sets() -> None:
    lines = ljsynth.read_lj_metadata(_real_lj_text())
    assert len(lines) == 13100
    sets = ljsynth.split_sentences(lines, 6000, 300, 300, seed=0)
    assert {s: len(v) for s, v in sets.items()} == {"train": 6000, "dev": 300, "test": 300}
    texts = [x.text for v in sets.values() for x in v]
    assert len(set(texts)) == len(texts) and all(TRANSCRIPT.fullmatch(t) for t in texts)
    words = [len(t.split()) for t in texts]
    assert min(words) >= 5 and max(words) <= 12 and 8 <= sum(words) / len(words) <= 10
    # real text: a sizeable share of test words never occurs in train, which CTC alone gets wrong
    train_vocab = {w for x in sets["train"] for w in x.text.split()}
    test_words = [w for x in sets["test"] for w in x.text.split()]
    assert len(train_vocab) > 5000
    assert sum(w not in train_vocab for w in test_words) / len(test_words) > 0.03
    # LJ001-0007 ("1455" spelled out in its normalized column) yields these two segments; those that were drawn
    # are in one set only
    lj7 = [x for v in sets.values() for x in v if x.source == "LJ001-0007"]
    assert {x.text for x in lj7} <= {"the earliest book printed with movable types the gutenberg",
                                     "or forty two line bible of about fourteen fifty five"}  # fmt: skip


@needs_espeak
def test_real_lj_text_tiny_generation(tmp_path: Path) -> None:
    meta = _real_lj_text()
    sets = ljsynth.prepare_ljsynth(tmp_path / "data", tmp_path / "wav", 2, 1, 1, seed=0, nj=1, lj_text=meta)
    # the first test utterance of the default corpus, whatever the set sizes
    full = ljsynth.split_sentences(ljsynth.read_lj_metadata(meta), 6000, 300, 300, seed=0)
    assert sets["test"][0].text == full["test"][0].text
    for split in SPLITS:
        assert validate_data_dir(tmp_path / "data" / split) == []
