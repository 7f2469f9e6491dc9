"""A sentence-level synthetic ASR corpus: real English text (the LJ Speech transcript) spoken by many espeak-ng voices.

Why: the mini corpus (a 250-word grammar) is nearly solved by CTC alone, so non-autoregressive refinements (Mask-CTC,
Imputer, self-conditioned CTC) have little to fix there. Here the text is real, open-vocabulary English (~10k word
types), the voices are many (:data:`SPEAKERS`: the 12 mini speakers plus 16 others over 8 accents and 3 synthesizer
families) and each utterance's rate and pitch are jittered, so a small CPU-trained CTC stays clearly imperfect, while
the audio is still made offline and deterministically from text.

Text. The 3rd (normalized) column of an LJ Speech ``metadata.csv`` (``id|text|normalized text``; numbers are already
spelled out there), from ``--lj-text``, else ``$NARSPEECH_SHARED_DATA/lj_text/metadata.csv``, else
``<repo>/../shared/data/lj_text/metadata.csv``. When none exists, the usage examples of WordNet 3.0 (Debian package
``wordnet-base``, ``/usr/share/wordnet/data.{noun,verb,adj,adv}``) are used instead; with neither, a
:class:`TextSourceError` says where to get the text. :func:`normalize`: lowercase; letters, apostrophes inside words
(``o'connor's``) and after a plural ``s`` (``debtors'``) and spaces are kept; hyphens become spaces; other punctuation
goes. A line is skipped when it still holds digits, non-ASCII letters, a dotted abbreviation (``Mr.``, ``i.e.``,
``a.m.``: espeak-ng would read ``mr`` as "mister", so the transcript would not say what the audio says), a bare token
that espeak-ng expands into other words (:data:`ESPEAK_EXPANDS`) or a Roman numeral (read as "roman three").

Length. LJ lines run 2-50 words (median 17, ~6 s of speech): too long for the CPU budget of this corpus (each ASR model
trains in <= 20 min on 2 cores). Each line is cut at its clause punctuation (``, ; : . ! ? ( ) --``) and consecutive
clauses are merged greedily into segments of :data:`MIN_WORDS`..:data:`MAX_WORDS` (5-12) words; a longer clause is
dropped. That keeps ~12.1k distinct segments from the 13,100 lines (mean 8.9 words; measured on 900 utterances: mean
3.1 s, max 6.1 s), enough for the default 6,000/300/300 sets; whole lines of 5-20 words would leave only ~8.2k
(mean 14 words, ~5 s), too few for those sets and ~1.7x the training time per utterance.

Sets are split BY SOURCE LINE: the lines are shuffled with ``seed``; test takes the segments of the first lines, dev
the next, train the rest. No source line contributes to two sets, a segment text occurs once in the whole corpus, and
growing ``num_train`` leaves dev/test unchanged. Utterance ``i`` of that stream is spoken by ``SPEAKERS[i % 28]`` (so
every set has every speaker), with its rate scaled by up to +-:data:`RATE_JITTER` and its pitch moved by up to
+-:data:`PITCH_JITTER`, drawn from ``(seed, i)``. Ids are ``<speaker>-<i>`` (``spk17-000042``); ``utt2src`` maps each
utterance to its source line (``LJ001-0007`` or ``wordnet:noun:00003939:0``).

Targets. ``chars`` (default): the text itself. ``phones``: espeak-ng's IPA for the text in the utterance's own accent
(``espeak_TextToPhonemes``, stress marks removed), one symbol per character, so the character tokenizer serves as a
phone-symbol tokenizer; espeak-ng joins unstressed function words to the next word ("of the" -> ``ʌvðə``), so "words"
of a phone transcript are espeak's, not the text's. The word transcript is then kept in ``text.words``.

Audio is made as for the mini corpus (:mod:`narspeech.recipes.mini`: 22.05 kHz espeak output, edge silence fixed,
16 kHz 16-bit wav, reused when its embedded key matches). ``prepare_ljsynth`` is the library function; ``main`` is
the thin CLI behind ``narspeech prepare ljsynth``.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from narspeech.data.kaldi import Utterance, write_kv
from narspeech.recipes.fsdd import SHARED_DATA_ENV, shared_data_dir
from narspeech.recipes.mini import ID_WIDTH, SPLITS, Speaker
from narspeech.recipes.mini import SPEAKERS as MINI_SPEAKERS
from narspeech.recipes.synth import (SINGLE_RATE, SINGLE_SPEAKER, TARGET_SAMPLE_RATE, SynthJob, check_sizes,
                                     generate_audio, require_espeak, write_split)

logger = logging.getLogger(__name__)

LJ_TEXT_SUBDIR = "lj_text"  # inside the shared data folder
LJ_METADATA = "metadata.csv"
LJ_URL = "https://keithito.com/LJ-Speech-Dataset/"
LJ_NORMALIZED_COLUMN = 2
WORDNET_DIR = Path("/usr/share/wordnet")  # where Debian's wordnet-base puts the database
WORDNET_POS = ("noun", "verb", "adj", "adv")
MIN_WORDS, MAX_WORDS = 5, 12
TARGETS = ("chars", "phones")
AUDIO_KEY_VERSION = "narspeech-ljsynth-1"  # bump when the audio pipeline changes, to invalidate reused wavs
RATE_JITTER = 0.08  # relative: a speaker's rate varies by up to +-8 % between utterances
PITCH_JITTER = 6  # absolute, on espeak's 0..100 pitch scale
PITCH_RANGE = (0, 100)

# Dotted abbreviations left in LJ's normalized column: two or more dotted letters ("i.e.", "a.m.", "M.P."), a dotted
# capital initial ("H. G. Bennet"; not "I.", which ends sentences as a pronoun) or a dotted title/abbreviation word.
_ABBREVIATION = re.compile(
    r"(?:\b[A-Za-z]\.){2,}|\b[A-HJ-Z]\.|\b(?:mr|mrs|messrs|dr|st|esq|co|rev|hon|bart|no|vol|jr|sr|capt|col|gen|lt|gov"
    r"|ltd|inc|bros|ft|mt|sq|mme|mlle|etc|viz|vs|ibid|cf|pp|ch)\.",
    re.IGNORECASE,
)
# Bare tokens that espeak-ng reads as other words (checked with espeak_TextToPhonemes): "mr" -> "mister".
ESPEAK_EXPANDS = frozenset({"mr", "mrs", "messrs", "dr", "st", "etc", "eg", "ltd", "lbs"})
_ROMAN = re.compile(r"m{0,3}(?:cm|cd|d?c{0,3})(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})")
ROMAN_LOOKALIKES = frozenset({"mix"})  # well-formed numerals that are words, and that espeak-ng reads as words
_CLAUSE_BREAK = re.compile(r"--|[,;:.!?()\[\]]")
_STRESS_MARKS = str.maketrans("", "", "\u02c8\u02cc")  # IPA primary and secondary stress


class TextSourceError(FileNotFoundError):
    """No sentence source: neither an LJ Speech transcript nor WordNet; the message says where to get one."""


# ---------------------------------------------------------------------------------------------------------------------
# Text
def _is_roman_numeral(word: str) -> bool:
    return len(word) >= 2 and word not in ROMAN_LOOKALIKES and _ROMAN.fullmatch(word) is not None


def normalize(text: str) -> str | None:
    """The transcript of ``text`` (lowercase words of ``[a-z']``, single spaces), or None when ``text`` must be skipped
    because espeak-ng would not say what the transcript says (see the module docstring). ``""`` for no words."""
    if _ABBREVIATION.search(text):
        return None
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    # apostrophes inside a word or closing a plural possessive stay; the others are quotation marks
    text = re.sub(r"(?<=[A-Za-z])'(?=[A-Za-z])|(?<=[sS])'(?=[\s,;:.!?)\"]|$)", "\0", text)
    text = text.replace("'", " ").replace("\0", "'").replace("-", " ").lower()
    kept = []
    for c in text:
        if "a" <= c <= "z" or c == "'":
            kept.append(c)
        elif c.isdigit() or (c.isalpha() and not c.isascii()):
            return None  # "1455" or "Müller": no spelling a character tokenizer and espeak would agree on
        else:
            kept.append(" ")
    words = "".join(kept).split()
    if any(w in ESPEAK_EXPANDS or _is_roman_numeral(w) for w in words):
        return None
    return " ".join(words)


def segment(text: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> list[str]:
    """Normalized segments of ``min_words``..``max_words`` words cut from one source line at clause punctuation.

    Consecutive clauses are merged greedily while they fit in ``max_words``; a clause that is skipped by
    :func:`normalize` or is longer than ``max_words`` is dropped and ends the segment being built (segments never
    join text across it). A line with a dotted abbreviation anywhere yields nothing: cut at its dot, "Mr. Smith"
    would become "smith" after an unrelated clause.
    """
    if _ABBREVIATION.search(text):
        return []
    out: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if min_words <= len(current) <= max_words:
            out.append(" ".join(current))
        current.clear()

    for clause in _CLAUSE_BREAK.split(text):
        norm = normalize(clause)
        if norm is None:
            flush()
            continue
        words = norm.split()
        if not words:
            continue
        if len(current) + len(words) > max_words:
            flush()
            if len(words) > max_words:
                continue
        current.extend(words)
    flush()
    return out


def read_lj_metadata(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(id, normalized text)]`` from an LJ Speech ``metadata.csv`` (``id|text|normalized text``)."""
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) <= LJ_NORMALIZED_COLUMN or not fields[0]:
                raise ValueError(f"{path}:{lineno}: expected 'id|text|normalized text', got {line[:80]!r}")
            rows.append((fields[0], fields[LJ_NORMALIZED_COLUMN]))
    return rows


def read_wordnet_examples(wordnet_dir: str | os.PathLike = WORDNET_DIR) -> list[tuple[str, str]]:
    """``[(source id, example)]``: the quoted usage examples in the glosses of WordNet's ``data.<pos>`` files.

    A data line is ``offset lex_filenum ss_type ... | gloss; "example"; "example"``; the license header lines start
    with two spaces.
    """
    rows: list[tuple[str, str]] = []
    for pos in WORDNET_POS:
        path = Path(wordnet_dir) / f"data.{pos}"
        if not path.is_file():
            continue
        # latin-1 decodes any byte: a non-ASCII letter then makes normalize() skip its example, as for LJ text
        with open(path, encoding="latin-1") as f:
            for line in f:
                if line.startswith(" ") or " | " not in line:
                    continue
                offset = line.split(" ", 1)[0]
                for k, example in enumerate(re.findall(r'"([^"]+)"', line.split(" | ", 1)[1])):
                    rows.append((f"wordnet:{pos}:{offset}:{k}", example))
    return rows


def default_lj_text() -> Path:
    return shared_data_dir() / LJ_TEXT_SUBDIR / LJ_METADATA


def load_source_lines(
    lj_text: str | os.PathLike | None = None, wordnet_dir: str | os.PathLike | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """``(description, [(source id, text)])`` from the first text source that exists (see the module docstring).

    ``lj_text`` is a ``metadata.csv`` or a folder holding one; given explicitly, it must exist. ``wordnet_dir``
    defaults to :data:`WORDNET_DIR`.
    """
    wordnet_dir = Path(WORDNET_DIR if wordnet_dir is None else wordnet_dir)
    if lj_text is not None:
        path = Path(lj_text)
        if path.is_dir():
            path = path / LJ_METADATA
        if not path.is_file():
            raise TextSourceError(f"LJ Speech transcript {path} not found (give metadata.csv or the folder holding it)")
        return f"LJ Speech transcript {path}", read_lj_metadata(path)
    path = default_lj_text()
    if path.is_file():
        return f"LJ Speech transcript {path}", read_lj_metadata(path)
    if any((wordnet_dir / f"data.{pos}").is_file() for pos in WORDNET_POS):
        logger.warning("%s not found: using the WordNet usage examples in %s instead", path, wordnet_dir)
        return f"WordNet usage examples in {wordnet_dir}", read_wordnet_examples(wordnet_dir)
    raise TextSourceError(
        f"no sentence source for ljsynth: the LJ Speech transcript {path} does not exist and WordNet "
        f"({wordnet_dir}/data.noun) is not installed. Give --lj-text PATH to an LJ Speech metadata.csv "
        f"(LJSpeech-1.1/metadata.csv from {LJ_URL}), set ${SHARED_DATA_ENV} to a folder holding "
        f"{LJ_TEXT_SUBDIR}/{LJ_METADATA}, or install WordNet's usage examples (apt-get install wordnet-base)"
    )


@dataclass(frozen=True)
class Sentence:
    """One segment in the seeded stream: ``index`` is its position (and utterance number), ``source`` its line."""

    index: int
    text: str
    source: str


def split_sentences(
    lines: Sequence[tuple[str, str]],
    num_train: int,
    num_dev: int,
    num_test: int,
    seed: int = 0,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> dict[str, list[Sentence]]:
    """``{set: [Sentence]}`` from source ``lines`` ``[(id, text)]``, disjoint by source line and by text.

    Lines are visited in a seeded shuffle of their sorted ids (so the file's line order does not matter); test takes
    the segments of the first lines, then dev, then train. When a set fills up in the middle of a line, the rest of
    that line is left out rather than given to the next set. Raises ValueError when the text runs out.
    """
    check_sizes(num_train=num_train, num_dev=num_dev, num_test=num_test)
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    order = sorted(dict(lines).items())
    random.Random(seed).shuffle(order)
    wanted = {"test": num_test, "dev": num_dev, "train": num_train}
    fill_order = [s for s in ("test", "dev", "train") if wanted[s] > 0]
    sets: dict[str, list[Sentence]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    index = 0
    lines_iter = iter(order)
    for split in fill_order:
        while len(sets[split]) < wanted[split]:
            source, text = next(lines_iter, (None, ""))
            if source is None:
                got = {s: len(v) for s, v in sets.items()}
                raise ValueError(
                    f"the text yields only {len(seen)} distinct segments of {min_words}-{max_words} words, not enough "
                    f"for num_test={num_test}, num_dev={num_dev}, num_train={num_train} (filled: {got}); "
                    "lower the set sizes or widen --min-words/--max-words"
                )
            for seg in segment(text, min_words, max_words):
                if seg in seen:
                    continue
                seen.add(seg)
                if len(sets[split]) < wanted[split]:
                    sets[split].append(Sentence(index, seg, source))
                    index += 1
    return sets


# ---------------------------------------------------------------------------------------------------------------------
# Speakers: the mini corpus's 12, then 16 more with other variants (named espeak variants, the Klatt synthesizer of
# "david", "adam" and "edward") and the West Midlands accent that mini does not use. Rates keep the fastest utterances
# within what CTC can emit on 40 ms frames (a 12-word segment has up to ~90 characters); "Andrea" and "anika" speak
# ~10 % faster than the other variants at the same setting, hence their lower rates.
SPEAKERS: tuple[Speaker, ...] = MINI_SPEAKERS + (
    Speaker("spk13", "en-gb-x-gbcwmd+m5", 160, 45),
    Speaker("spk14", "en-us+m8", 150, 40),
    Speaker("spk15", "en-gb-x-rp+Andrea", 150, 55),
    Speaker("spk16", "en+belinda", 145, 55),
    Speaker("spk17", "en-us+david", 175, 45),
    Speaker("spk18", "en-gb-scotland+paul", 160, 40),
    Speaker("spk19", "en-029+Annie", 150, 60),
    Speaker("spk20", "en-us-nyc+robert", 185, 45),
    Speaker("spk21", "en+adam", 155, 50),
    Speaker("spk22", "en-gb-x-gbclan+quincy", 170, 35),
    Speaker("spk23", "en-us+linda", 165, 55),
    Speaker("spk24", "en-gb-x-rp+michel", 140, 45),
    Speaker("spk25", "en-us+anika", 160, 50),
    Speaker("spk26", "en+edward", 150, 40),
    Speaker("spk27", "en-gb-x-gbcwmd+steph", 175, 60),
    Speaker("spk28", "en-us+Alex", 160, 50),
)


def speaker_of(index: int) -> Speaker:
    """Round robin over the sentence stream (itself a shuffle of the text), so every set gets every speaker."""
    return SPEAKERS[index % len(SPEAKERS)]


def prosody_of(index: int, seed: int) -> tuple[int, int]:
    """``(rate, pitch)`` of utterance ``index``: its speaker's, jittered by a draw that depends on ``(seed, index)``
    only (``random.Random`` seeds a string through SHA-512, so this is stable across runs and processes)."""
    spk = speaker_of(index)
    rng = random.Random(f"ljsynth-{seed}-{index}")
    rate = round(spk.rate * rng.uniform(1.0 - RATE_JITTER, 1.0 + RATE_JITTER))
    pitch = min(max(spk.pitch + rng.randint(-PITCH_JITTER, PITCH_JITTER), PITCH_RANGE[0]), PITCH_RANGE[1])
    return rate, pitch


# ---------------------------------------------------------------------------------------------------------------------
# Phone targets
_IPA_MODE = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8 instead of espeak's ASCII mnemonics
_TEXTMODE_UTF8 = 1


def phonemize(text: str, voice: str) -> str:
    """espeak-ng's IPA for ``text`` in ``voice``'s accent, without stress marks, words separated by single spaces.

    Uses ``espeak_TextToPhonemes`` on the engine of :mod:`narspeech.recipes.espeak` (under its lock: espeak-ng's
    state is global), which returns one clause per call and advances the text pointer until it is NULL.
    """
    from narspeech.recipes import espeak

    with espeak._lock:
        engine = espeak._get_engine()
        fn = engine.lib.espeak_TextToPhonemes
        fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        fn.restype = ctypes.c_char_p
        engine.set_voice(voice)
        buf = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        clauses: list[str] = []
        while ptr.value:
            out = fn(ctypes.byref(ptr), _TEXTMODE_UTF8, _IPA_MODE)
            if out:
                clauses.append(out.decode("utf-8"))
    return " ".join(" ".join(clauses).translate(_STRESS_MARKS).split())


# ---------------------------------------------------------------------------------------------------------------------
def prepare_ljsynth(
    data_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    num_train: int = 6000,
    num_dev: int = 300,
    num_test: int = 300,
    seed: int = 0,
    nj: int = 2,
    lj_text: str | os.PathLike | None = None,
    targets: str = "chars",
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
    wordnet_dir: str | os.PathLike | None = None,
    voice: str | None = None,
    sample_rate: int = TARGET_SAMPLE_RATE,
) -> dict[str, list[Utterance]]:
    """Generate the corpus: wavs in ``audio_dir``, Kaldi data dirs ``<data_dir>/{train,dev,test}`` with ``utt2dur``
    and ``utt2src`` (and ``text.words`` for phone targets). Returns ``{set: utterances}``.

    ``voice`` (e.g. ``"en-us"``): one espeak-ng voice at its own rate and pitch for every utterance (speaker
    ``single``, no jitter), the TTS corpus of ``egs/ljsynth/tts1``; ``sample_rate`` of the wavs (22050 keeps
    espeak-ng's own rate, as TTS wants).

    Raises :class:`TextSourceError` without a text source, ValueError for bad sizes/targets or too little text, and
    :class:`narspeech.recipes.espeak.EspeakError` when espeak-ng cannot be used.
    """
    check_sizes(num_train=num_train, num_dev=num_dev, num_test=num_test)
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    require_espeak()
    start = time.perf_counter()
    source, lines = load_source_lines(lj_text, wordnet_dir)
    sets = split_sentences(lines, num_train, num_dev, num_test, seed, min_words, max_words)
    logger.info("text: %s (%d lines)", source, len(lines))
    audio_dir = Path(audio_dir).resolve()
    audio_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, list[SynthJob]] = {}
    for split, sentences in sets.items():
        jobs[split] = []
        for s in sentences:
            spk = speaker_of(s.index) if voice is None else Speaker(SINGLE_SPEAKER, voice, SINGLE_RATE, 50)
            rate, pitch = prosody_of(s.index, seed) if voice is None else (spk.rate, spk.pitch)
            utt_id = f"{spk.id}-{s.index:0{ID_WIDTH}d}"
            jobs[split].append(SynthJob(utt_id, s.text, spk.id, spk.voice, rate, pitch,
                                        str(audio_dir / f"{utt_id}.wav"), AUDIO_KEY_VERSION, sample_rate))  # fmt: skip
    durations = generate_audio([j for split in SPLITS for j in jobs[split]], nj)
    out: dict[str, list[Utterance]] = {}
    for split in SPLITS:
        split_dir = Path(data_dir) / split
        texts = [phonemize(j.text, j.voice) if targets == "phones" else j.text for j in jobs[split]]
        out[split] = [Utterance(j.utt_id, j.path, t, j.speaker) for j, t in zip(jobs[split], texts)]
        write_split(split_dir, out[split], durations)
        write_kv(split_dir / "utt2src", {j.utt_id: s.source for j, s in zip(jobs[split], sets[split])})
        words_file = split_dir / "text.words"
        if targets == "phones":
            write_kv(words_file, {j.utt_id: j.text for j in jobs[split]})
        else:
            words_file.unlink(missing_ok=True)  # left by an earlier phone-target run: it would no longer match
    logger.info("prepared %s in %.1f s with nj=%d", data_dir, time.perf_counter() - start, nj)
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare ljsynth",
        description="Sentence-level synthetic ASR corpus: LJ Speech transcript segments of "
        f"{MIN_WORDS}-{MAX_WORDS} words spoken by {len(SPEAKERS)} espeak-ng voices (sets disjoint by source "
        "line), 16 kHz Kaldi data directories.",
    )
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where train/, dev/, test/ go")
    p.add_argument("--audio-dir", type=Path, default=Path("audio/ljsynth"), help="where the 16 kHz wavs go")
    p.add_argument("--lj-text", type=Path, default=None,
                   help=f"LJ Speech metadata.csv (or its folder); default ${SHARED_DATA_ENV}/{LJ_TEXT_SUBDIR}/"
                   f"{LJ_METADATA}, else <repo>/../shared/data/{LJ_TEXT_SUBDIR}/{LJ_METADATA}, else WordNet's usage "
                   f"examples ({WORDNET_DIR})")  # fmt: skip
    p.add_argument("--num-train", type=int, default=6000, help="training utterances (one segment each)")
    p.add_argument("--num-dev", type=int, default=300, help="development utterances")
    p.add_argument("--num-test", type=int, default=300, help="test utterances")
    p.add_argument("--min-words", type=int, default=MIN_WORDS, help="shortest segment in words")
    p.add_argument("--max-words", type=int, default=MAX_WORDS, help="longest segment in words")
    p.add_argument("--targets", choices=TARGETS, default="chars",
                   help="transcripts: the words (chars), or espeak-ng's IPA in each voice's accent (phones)")
    p.add_argument("--seed", type=int, default=0, help="seed of the line shuffle and the prosody jitter")
    p.add_argument("--voice", default=None,
                   help="one espeak-ng voice for every utterance, no jitter (a TTS corpus), e.g. en-us")
    p.add_argument("--sample-rate", type=int, default=TARGET_SAMPLE_RATE,
                   help="of the wavs (22050 = espeak-ng's own rate, for TTS)")
    p.add_argument("--nj", type=int, default=2, help="synthesis processes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from narspeech.recipes.espeak import EspeakError

    try:
        sets = prepare_ljsynth(args.data_dir, args.audio_dir, args.num_train, args.num_dev, args.num_test, args.seed,
                               args.nj, args.lj_text, args.targets, args.min_words, args.max_words,
                               voice=args.voice, sample_rate=args.sample_rate)  # fmt: skip
    except (OSError, ValueError, EspeakError) as e:
        print(f"narspeech prepare ljsynth: error: {e}", file=sys.stderr)
        return 1
    for u in sets["train"][:2]:
        logger.info("example: %s (%s) %s", u.utt_id, args.voice or speaker_of(int(u.utt_id.split("-")[1])).voice,
                    u.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
