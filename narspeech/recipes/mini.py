"""The offline demo corpus: generated English sentences spoken by espeak-ng voices.

Nothing is downloaded. A small grammar written for this project (templates over word lists, ~250 words) yields unique
lowercase sentences of 4-10 words, deterministic from a seed; each sentence is spoken once, by one of
:data:`SPEAKERS` (an espeak voice + variant with its own rate and pitch), through :mod:`narspeech.recipes.espeak`.
Sets are split BY SENTENCE: test takes the first sentences of the seeded stream, dev the next, train the rest, so no
text is in two sets, every speaker is in every set (when sets are large enough), and growing ``num_train`` leaves
dev/test unchanged.

Audio: 22.05 kHz espeak output, edge silence trimmed/padded to :data:`EDGE_SILENCE_S`, resampled to 16 kHz with
torchaudio, written as 16-bit PCM ``<audio_dir>/<utt_id>.wav`` (atomically). A wav whose embedded comment names the
same text, voice, rate and pitch is reused, so reruns are cheap and a changed seed never reuses stale audio.

``prepare_mini`` is the library function; ``main`` is the thin CLI behind ``narspeech prepare mini``. The speakers
are shared with :mod:`narspeech.recipes.ljsynth`; the audio pipeline (:mod:`narspeech.recipes.synth`) too.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from narspeech.data.kaldi import Utterance
from narspeech.recipes.synth import (SINGLE_RATE, SINGLE_SPEAKER, TARGET_SAMPLE_RATE, SynthJob, check_sizes,
                                     generate_audio, require_espeak, write_split)

logger = logging.getLogger(__name__)

MIN_WORDS, MAX_WORDS = 4, 10
SPLITS = ("train", "dev", "test")
EVAL_SPLIT = "eval"  # the optional larger held-out set, after train in the sentence stream (``--num-eval``)
ID_WIDTH = 6  # zero padding of sentence indices, so utterance ids sort numerically up to a million sentences
MAX_DRAWS_PER_SENTENCE = 200  # rejection-sampling budget before the grammar is declared exhausted

# ---------------------------------------------------------------------------------------------------------------------
# The grammar. Every word list is written here by hand; nouns and verbs carry (singular, plural/base) forms so that
# subject and verb agree ("the cat sees", "two cats see", "does the cat see").
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
DET_SINGULAR = ("the", "a", "this", "that", "my", "your", "our", "his", "her", "every")
DET_PLURAL = ("the", "these", "those", "my", "your", "our", "his", "her", "some", "many")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "orange", "pink")
ADJECTIVES = (
    "small", "big", "old", "young", "happy", "tall", "little", "quiet", "heavy", "soft", "warm", "cold", "clean",
    "dirty", "tiny", "strong", "gentle", "empty", "funny",
)  # fmt: skip
ANIMALS = (
    ("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("horse", "horses"), ("cow", "cows"), ("duck", "ducks"),
    ("fox", "foxes"), ("rabbit", "rabbits"), ("mouse", "mice"), ("frog", "frogs"),
)  # fmt: skip
PEOPLE = (  # never colored: "a pink farmer" is not the kind of sentence we want to teach
    ("girl", "girls"), ("boy", "boys"), ("man", "men"), ("woman", "women"), ("child", "children"),
    ("farmer", "farmers"), ("teacher", "teachers"), ("doctor", "doctors"), ("baker", "bakers"),
    ("sailor", "sailors"), ("king", "kings"),
)  # fmt: skip
THINGS = (
    ("box", "boxes"), ("ball", "balls"), ("cup", "cups"), ("book", "books"), ("hat", "hats"), ("chair", "chairs"),
    ("apple", "apples"), ("car", "cars"), ("boat", "boats"), ("key", "keys"), ("shoe", "shoes"), ("clock", "clocks"),
    ("lamp", "lamps"), ("bag", "bags"), ("bottle", "bottles"), ("basket", "baskets"), ("letter", "letters"),
    ("flower", "flowers"), ("cake", "cakes"), ("egg", "eggs"),
)  # fmt: skip
ANIMATE = ANIMALS + PEOPLE
TRANSITIVE = (
    ("sees", "see"), ("finds", "find"), ("likes", "like"), ("wants", "want"), ("takes", "take"),
    ("carries", "carry"), ("holds", "hold"), ("washes", "wash"), ("paints", "paint"), ("buys", "buy"),
    ("sells", "sell"), ("drops", "drop"), ("brings", "bring"), ("watches", "watch"), ("hides", "hide"),
    ("pushes", "push"), ("counts", "count"), ("follows", "follow"),
)  # fmt: skip
INTRANSITIVE = (
    ("sleeps", "sleep"), ("runs", "run"), ("jumps", "jump"), ("sings", "sing"), ("waits", "wait"), ("sits", "sit"),
    ("walks", "walk"), ("plays", "play"), ("dances", "dance"), ("swims", "swim"), ("rests", "rest"),
    ("laughs", "laugh"),
)  # fmt: skip
ADVERBS = ("quickly", "slowly", "quietly", "happily", "again", "often", "always")
TOGETHER = "together"  # only after a plural subject
PREPOSITIONS = ("near", "behind", "under", "in", "on", "beside", "inside", "by", "at")
PLACES = (
    "house", "garden", "kitchen", "park", "river", "school", "market", "forest", "bridge", "station", "farm",
    "village", "hill", "lake", "table", "window", "door", "tree", "shop", "barn",
)  # fmt: skip
TIMES = ("today", "tomorrow", "tonight", "soon")
PLEASE_VERBS = ("put", "bring", "take", "hide", "drop", "carry")
VOWELS = "aeiou"
# how often optional parts appear: tuned by eye for varied sentences of mostly 6-9 words
P_PLURAL = 0.4
P_NUMBER = 0.5  # a plural noun phrase starts with a number (two..twelve) rather than a determiner
P_ONE = 0.05  # a singular noun phrase starts with "one"
P_ADJECTIVE = 0.4
P_COLOR = 0.4
NUM_TEMPLATES = 8


def _article(words: list[str]) -> list[str]:
    """``a`` -> ``an`` before a vowel ("an old cat"): the only spelling rule the grammar needs."""
    return ["an" if w == "a" and nxt[0] in VOWELS else w for w, nxt in zip(words, words[1:] + ["x"])]


def _noun_phrase(
    rng: random.Random, nouns: Sequence[tuple[str, str]], plural: bool, indefinite: bool = False
) -> list[str]:
    """``det|number [adjective] [color] noun``, singular or plural; ``indefinite`` for "there is/are ..."."""
    singular, plural_form = rng.choice(nouns)
    if plural:
        dets = ("some", "many") if indefinite else DET_PLURAL
        det = rng.choice(NUMBERS[1:]) if rng.random() < P_NUMBER else rng.choice(dets)
    elif rng.random() < P_ONE:
        det = "one"
    else:
        det = "a" if indefinite else rng.choice(DET_SINGULAR)
    words = [det]
    if rng.random() < P_ADJECTIVE:
        words.append(rng.choice(ADJECTIVES))
    if rng.random() < P_COLOR and (singular, plural_form) not in PEOPLE:
        words.append(rng.choice(COLORS))
    return words + [plural_form if plural else singular]


def _place(rng: random.Random) -> list[str]:
    adj = [rng.choice(ADJECTIVES)] if rng.random() < 0.3 else []
    return [rng.choice(PREPOSITIONS), "the", *adj, rng.choice(PLACES)]


def _maybe(rng: random.Random, p: float, words: list[str]) -> list[str]:
    return words if rng.random() < p else []


def _adverb(rng: random.Random, plural: bool) -> str:
    return TOGETHER if plural and rng.random() < 0.2 else rng.choice(ADVERBS)


def _sentence(rng: random.Random) -> list[str]:
    """One sentence from a randomly chosen template."""
    plural = rng.random() < P_PLURAL
    subj = _noun_phrase(rng, ANIMATE, plural)
    # people are subjects only, so that no one is sold, washed or dropped
    obj = _noun_phrase(rng, ANIMALS + THINGS, rng.random() < P_PLURAL)
    vt = rng.choice(TRANSITIVE)[1 if plural else 0]
    vi = rng.choice(INTRANSITIVE)[1 if plural else 0]
    template = rng.randrange(NUM_TEMPLATES)
    if template == 0:  # the small red cat sees two green boxes near the old house
        words = [*subj, vt, *obj, *_maybe(rng, 0.5, _place(rng))]
    elif template == 1:  # three old dogs sleep quietly in the garden
        words = [*subj, vi, *_maybe(rng, 0.5, [_adverb(rng, plural)]), *_maybe(rng, 0.7, _place(rng))]
    elif template == 2:  # there are five blue cups on the table
        thing = _noun_phrase(rng, THINGS + ANIMALS, plural, indefinite=True)
        words = ["there", "are" if plural else "is", *thing, *_place(rng)]
    elif template == 3:  # does the cat like the red ball
        words = ["do" if plural else "does", *subj, rng.choice(TRANSITIVE)[1], *obj]
    elif template == 4:  # where are the seven little frogs
        words = ["where", "are" if plural else "is", *subj, *_maybe(rng, 0.3, [rng.choice(("today", "tonight"))])]
    elif template == 5:  # please put the blue cup on the table
        words = ["please", rng.choice(PLEASE_VERBS), *_noun_phrase(rng, THINGS, rng.random() < P_PLURAL), *_place(rng)]
    elif template == 6:  # tomorrow the farmer will paint the old barn
        words = [*_maybe(rng, 0.5, [rng.choice(TIMES)]), *subj, rng.choice(("will", "can")),
                 rng.choice(TRANSITIVE)[1], *obj]  # fmt: skip
    else:  # the cat and two dogs play together
        other = _noun_phrase(rng, ANIMATE, rng.random() < P_PLURAL)
        words = [*subj, "and", *other, rng.choice(INTRANSITIVE)[1], *_maybe(rng, 0.5, [_adverb(rng, True)])]
    return _article(words)


def vocabulary() -> set[str]:
    """Every word the grammar can produce."""
    words = set(NUMBERS + DET_SINGULAR + DET_PLURAL + COLORS + ADJECTIVES + ADVERBS + PREPOSITIONS + PLACES + TIMES)
    for pairs in (ANIMATE, THINGS, TRANSITIVE, INTRANSITIVE):
        words.update(w for pair in pairs for w in pair)
    words.update(PLEASE_VERBS)
    words.update((TOGETHER, "an", "there", "is", "are", "do", "does", "where", "please", "will", "can", "and"))
    return words


def generate_sentences(num: int, seed: int = 0) -> list[str]:
    """``num`` distinct sentences of :data:`MIN_WORDS`..:data:`MAX_WORDS` words; the same ``seed`` gives the same
    list, and a longer list starts with the shorter one (so set boundaries stay put when a set grows)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    draws = 0
    while len(out) < num:
        draws += 1
        if draws > MAX_DRAWS_PER_SENTENCE * max(num, 1):
            raise ValueError(f"the grammar yielded only {len(out)} distinct sentences of the {num} requested")
        words = _sentence(rng)
        text = " ".join(words)
        if MIN_WORDS <= len(words) <= MAX_WORDS and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def split_sentences(
    num_train: int, num_dev: int, num_test: int, seed: int = 0, num_eval: int = 0
) -> dict[str, list[tuple[int, str]]]:
    """``{set: [(sentence index, text), ...]}``: test first, dev next, train after them in the seeded sentence stream,
    and, when ``num_eval`` > 0, an ``eval`` set after train (so adding it changes none of the other three)."""
    texts = generate_sentences(num_test + num_dev + num_train + num_eval, seed)
    end_train = num_test + num_dev + num_train
    bounds = {"test": (0, num_test), "dev": (num_test, num_test + num_dev), "train": (num_test + num_dev, end_train)}
    if num_eval > 0:
        bounds[EVAL_SPLIT] = (end_train, end_train + num_eval)
    return {s: [(i, texts[i]) for i in range(*b)] for s, b in bounds.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Speakers: espeak voice (accent) + variant (timbre), with a speaking rate in words per minute and a base pitch 0..100.
@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker; ``id`` prefixes its utterance ids."""

    id: str
    voice: str  # espeak-ng voice name with variant, e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..100, 50 = the variant's own pitch


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("spk01", "en-us+f3", 150, 55),
    Speaker("spk02", "en-us+m3", 170, 45),
    Speaker("spk03", "en-us+f1", 180, 60),
    Speaker("spk04", "en-us+m1", 140, 35),
    Speaker("spk05", "en+f2", 160, 50),
    Speaker("spk06", "en+m2", 185, 40),
    Speaker("spk07", "en-gb-x-rp+f4", 135, 65),
    Speaker("spk08", "en-gb-x-rp+m4", 165, 30),
    Speaker("spk09", "en-gb-scotland+f5", 155, 45),
    Speaker("spk10", "en-029+m6", 175, 55),
    Speaker("spk11", "en-us-nyc+m7", 190, 50),
    Speaker("spk12", "en-gb-x-gbclan+f1", 145, 70),
)


def speaker_of(sentence_index: int) -> Speaker:
    """Round robin over the sentence stream, so every set gets every speaker in equal shares."""
    return SPEAKERS[sentence_index % len(SPEAKERS)]


# ---------------------------------------------------------------------------------------------------------------------
def prepare_mini(
    data_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    num_train: int = 1500,
    num_dev: int = 150,
    num_test: int = 150,
    seed: int = 0,
    nj: int = 2,
    num_eval: int = 0,
    voice: str | None = None,
    sample_rate: int = TARGET_SAMPLE_RATE,
) -> dict[str, list[Utterance]]:
    """Generate the corpus: wavs in ``audio_dir``, Kaldi data dirs ``<data_dir>/{train,dev,test}`` (+ ``utt2dur``),
    and ``<data_dir>/eval`` when ``num_eval`` > 0 (a larger held-out set for benchmarks whose differences the
    150-utterance test set cannot resolve). ``voice``: one espeak-ng voice for every sentence (speaker ``single``;
    the TTS demo's corpus), written at ``sample_rate`` (22050 keeps espeak-ng's own rate).

    Utterance ids are ``<speaker>-<sentence index>`` (e.g. ``spk03-000042``); audio paths are absolute. Existing
    wavs made from the same text and voice are reused. Returns ``{set: utterances}``. Raises
    :class:`narspeech.recipes.espeak.EspeakError` when espeak-ng cannot be used.
    """
    check_sizes(num_train=num_train, num_dev=num_dev, num_test=num_test, num_eval=num_eval)
    require_espeak()
    audio_dir = Path(audio_dir).resolve()
    audio_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sets = split_sentences(num_train, num_dev, num_test, seed, num_eval)
    jobs: dict[str, list[SynthJob]] = {}
    for split, sentences in sets.items():
        jobs[split] = []
        for index, text in sentences:
            spk = speaker_of(index) if voice is None else Speaker(SINGLE_SPEAKER, voice, SINGLE_RATE, 50)
            utt_id = f"{spk.id}-{index:0{ID_WIDTH}d}"
            jobs[split].append(SynthJob(utt_id, text, spk.id, spk.voice, spk.rate, spk.pitch,
                                        str(audio_dir / f"{utt_id}.wav"), sample_rate=sample_rate))  # fmt: skip
    durations = generate_audio([j for split in sets for j in jobs[split]], nj)
    out: dict[str, list[Utterance]] = {}
    for split in sets:
        out[split] = [Utterance(j.utt_id, j.path, j.text, j.speaker) for j in jobs[split]]
        write_split(Path(data_dir) / split, out[split], durations)
    logger.info("prepared %s in %.1f s with nj=%d", data_dir, time.perf_counter() - start, nj)
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare mini",
        description="The offline demo corpus: generated English sentences spoken by espeak-ng voices "
        f"({len(SPEAKERS)} speakers in every set; sets disjoint by sentence), 16 kHz Kaldi data directories.",
    )
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where train/, dev/, test/ go")
    p.add_argument("--audio-dir", type=Path, default=Path("audio/mini"), help="where the 16 kHz wavs go")
    p.add_argument("--num-train", type=int, default=1500, help="training utterances (one sentence each)")
    p.add_argument("--num-dev", type=int, default=150, help="development utterances")
    p.add_argument("--num-test", type=int, default=150, help="test utterances")
    p.add_argument("--num-eval", type=int, default=0,
                   help="utterances of an extra held-out set <data-dir>/eval (0 = none), disjoint from the others")
    p.add_argument("--seed", type=int, default=0, help="seed of the sentence stream")
    p.add_argument("--nj", type=int, default=2, help="synthesis processes")
    p.add_argument("--voice", default=None, help="one espeak-ng voice for every sentence (a TTS corpus), e.g. en-us")
    p.add_argument("--sample-rate", type=int, default=TARGET_SAMPLE_RATE,
                   help="of the wavs (22050 = espeak-ng's own rate, for TTS)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from narspeech.recipes.espeak import EspeakError

    try:
        sets = prepare_mini(args.data_dir, args.audio_dir, args.num_train, args.num_dev, args.num_test, args.seed,
                            args.nj, args.num_eval, args.voice, args.sample_rate)  # fmt: skip
    except (OSError, ValueError, EspeakError) as e:
        print(f"narspeech prepare mini: error: {e}", file=sys.stderr)
        return 1
    for u in sets["train"][:2]:
        logger.info("example: %s (%s) %s", u.utt_id, args.voice or speaker_of(int(u.utt_id.split("-")[1])).voice,
                    u.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
