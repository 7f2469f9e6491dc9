"""CMU AN4 ("census"): real read English (spelled letters, digits, numbers, commands), 16 kHz, close-talk microphone.

948 training utterances from 74 speakers and 130 test utterances from 10 other speakers, the corpus of ESPnet's
``egs2/an4/asr1`` recipe. Layout (the CMU archive and its RIFF conversion alike)::

    <an4>/etc/an4_{train,test}.fileids          an4_clstk/fash/an251-fash-b           (one path per line)
    <an4>/etc/an4_{train,test}.transcription    <s> YES </s> (an251-fash-b)           (train wrapped in <s> .. </s>)
    <an4>/wav/{an4_clstk,an4test_clstk}/<speaker>/<id>.{wav,sph}

Text is normalised as ESPnet's ``local/data_prep.py`` does (the ``<s>``/``</s>`` wrapping stripped, upper case kept);
utterance ids are ``<speaker>-<prefix>-<suffix>`` (``fash-an251-b``), so sorting groups a speaker's utterances and
the speaker is the id's middle field of the corpus name. The dev set is made of **whole training speakers** (seeded
choice), so its accuracy is speaker-independent like the test set's. 16 kHz mono wav/flac files are referred to
where they are; anything else (the archive's NIST SPHERE ``.sph``, other rates) is converted once to 16 kHz wav in
``--audio-dir`` with soundfile. A file that cannot be used is named and skipped.

``prepare_an4`` is the library function; ``main`` is the thin CLI behind ``narspeech prepare an4``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from narspeech.audio.io import AudioError, audio_info, load_audio, save_wav
from narspeech.data.kaldi import Utterance, write_data_dir, write_kv
from narspeech.progress import logs_above_bars, progress
from narspeech.recipes.fsdd import SHARED_DATA_ENV, DownloadError, resolve_corpus_dir, shared_data_dir

logger = logging.getLogger(__name__)

AN4_URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
DOWNLOAD_TIMEOUT_S = 120
ARCHIVE_ROOT = "an4"  # the folder the official archive unpacks to
SAMPLE_RATE = 16000
PARTS = {"train": "an4_train", "test": "an4_test"}  # set -> etc/<name>.{fileids,transcription}
AUDIO_SUFFIXES = (".wav", ".flac", ".sph")  # looked for in this order
DEFAULT_NUM_DEV = 100  # utterances (as ESPnet's ndev_utt), rounded up to whole speakers
LINE_PATTERN = re.compile(r"^(?P<words>.*?)\s*\((?P<source>[^()\s]+)\)\s*$")


@dataclass(frozen=True)
class An4Entry:
    """One line of a transcription file with its audio."""

    utt_id: str  # <speaker>-<prefix>-<suffix>
    source: str  # the corpus name, e.g. an251-fash-b
    speaker: str
    text: str
    audio: Path


def default_an4_dir() -> Path:
    return shared_data_dir() / "an4"


def an4_root(an4_dir: str | os.PathLike) -> Path:
    """The folder holding ``etc/`` and ``wav/``: ``an4_dir`` itself or its ``an4/`` (the unpacked archive)."""
    d = Path(an4_dir)
    for cand in (d, d / ARCHIVE_ROOT):
        if (cand / "etc" / f"{PARTS['train']}.transcription").is_file():
            return cand
    raise FileNotFoundError(f"{d}: not the AN4 corpus (no etc/{PARTS['train']}.transcription in it or in "
                            f"{d / ARCHIVE_ROOT})")


def normalize_text(words: str) -> str:
    """ESPnet's AN4 normalisation: the sentence markers stripped, upper case kept, white space single."""
    tokens = words.split()
    if tokens[:1] == ["<s>"]:
        tokens = tokens[1:]
    if tokens[-1:] == ["</s>"]:
        tokens = tokens[:-1]
    return " ".join(tokens)


def parse_transcription(path: Path) -> tuple[dict[str, str], list[str]]:
    """``{corpus name: normalised text}`` and the problems (file:line) of the lines that could not be used."""
    texts: dict[str, str] = {}
    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            m = LINE_PATTERN.match(line.strip())
            if m is None:
                problems.append(f"{path}:{lineno}: expected '<words> (<id>)', got {line.strip()[:60]!r}")
                continue
            source, text = m.group("source"), normalize_text(m.group("words"))
            if source.count("-") != 2:
                problems.append(f"{path}:{lineno}: id {source!r} is not <prefix>-<speaker>-<suffix>")
            elif source in texts:
                problems.append(f"{path}:{lineno}: id {source!r} seen before")
            elif not text:
                problems.append(f"{path}:{lineno}: id {source!r} has no words")
            else:
                texts[source] = text
    return texts, problems


def read_part(root: Path, part: str) -> tuple[list[An4Entry], list[str]]:
    """The usable entries of ``etc/<part>.{fileids,transcription}`` with their audio files, and the problems."""
    texts, problems = parse_transcription(root / "etc" / f"{part}.transcription")
    fileids = root / "etc" / f"{part}.fileids"
    rel_paths: dict[str, str] = {}
    if fileids.is_file():
        for line in fileids.read_text(encoding="utf-8", errors="replace").split():
            rel_paths[Path(line).name] = line
    entries = []
    for source, text in texts.items():
        prefix, speaker, suffix = source.split("-")
        rel = rel_paths.get(source)
        if rel is None and rel_paths:
            problems.append(f"{fileids}: no line for {source!r} (its transcript is in {part}.transcription)")
            continue
        stem = root / "wav" / rel if rel else None
        audio = next((p for p in (stem.with_name(stem.name + s) for s in AUDIO_SUFFIXES) if p.is_file()), None) \
            if stem else None
        if audio is None:
            problems.append(f"{root / 'wav'}: no audio for {source!r} (looked for {rel or source}"
                            f"{{{','.join(AUDIO_SUFFIXES)}}})")
            continue
        entries.append(An4Entry(f"{speaker}-{prefix}-{suffix}", source, speaker, text, audio))
    missing = sorted(set(rel_paths) - set(texts))
    if missing:
        problems.append(f"{fileids}: {len(missing)} ids without a transcript, e.g. {missing[0]!r}")
    return sorted(entries, key=lambda e: e.utt_id), problems


def dev_speakers(entries: list[An4Entry], num_dev: int, seed: int = 0) -> set[str]:
    """Whole speakers, in a seeded order, until they hold at least ``num_dev`` utterances (none when 0)."""
    if num_dev <= 0:
        return set()
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.speaker] = counts.get(e.speaker, 0) + 1
    order = sorted(counts)
    random.Random(seed).shuffle(order)
    chosen, n = set(), 0
    for spk in order:
        if n >= num_dev or len(chosen) == len(order) - 1:  # keep at least one speaker for training
            break
        chosen.add(spk)
        n += counts[spk]
    return chosen


def usable_audio(entry: An4Entry, audio_dir: Path) -> str:
    """The path for wav.scp: the file itself when it is 16 kHz mono wav/flac, else a 16 kHz wav converted into
    ``audio_dir`` (kept when already there). :class:`AudioError` naming the file when it cannot be used."""
    info = audio_info(entry.audio)
    if info.frames == 0:
        raise AudioError(f"{entry.audio}: no samples")
    if entry.audio.suffix in (".wav", ".flac") and info.samplerate == SAMPLE_RATE and info.channels == 1:
        return str(entry.audio.resolve())
    out = (audio_dir / entry.speaker / f"{entry.source}.wav").resolve()
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        save_wav(out, load_audio(entry.audio, SAMPLE_RATE), SAMPLE_RATE)
    return str(out)


def prepare_an4(
    an4_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    num_dev: int = DEFAULT_NUM_DEV,
    seed: int = 0,
) -> dict[str, list[Utterance]]:
    """Kaldi data dirs ``<data_dir>/{train,dev,test}`` (+ ``utt2dur``) from an AN4 folder; returns ``{set: utts}``.

    ``dev`` holds whole training speakers (at least ``num_dev`` utterances); ``train`` the other speakers."""
    root = an4_root(an4_dir)
    audio_dir = Path(audio_dir)
    sets: dict[str, list[An4Entry]] = {}
    for name, part in PARTS.items():
        entries, problems = read_part(root, part)
        for p in problems:
            logger.warning("skipping: %s", p)
        sets[name] = entries
    if not sets["train"]:
        raise ValueError(f"{root}: no usable training utterance")
    held = dev_speakers(sets["train"], num_dev, seed)
    sets = {"train": [e for e in sets["train"] if e.speaker not in held],
            "dev": [e for e in sets["train"] if e.speaker in held], "test": sets["test"]}
    if not held:  # --num-dev 0: no dev set asked for
        del sets["dev"]
    overlap = {e.speaker for e in sets["train"]} & {e.speaker for e in sets["test"]}
    if overlap:
        logger.warning("speakers in both train and test: %s", ", ".join(sorted(overlap)))
    out: dict[str, list[Utterance]] = {}
    for name, entries in sets.items():
        utts, utt2dur, failed = [], {}, 0
        with logs_above_bars():
            for e in progress(entries, desc=f"an4 {name}", unit="utt"):
                try:
                    path = usable_audio(e, audio_dir)
                    dur = audio_info(path).duration
                except AudioError as err:
                    logger.warning("skipping %s: %s", e.utt_id, err)
                    failed += 1
                    continue
                utts.append(Utterance(e.utt_id, path, e.text, e.speaker))
                utt2dur[e.utt_id] = f"{dur:.3f}"
        if failed:
            logger.warning("%s: %d of %d utterances could not be used (named above)", name, failed, len(entries))
        if not utts:
            logger.warning("set %s is empty; not written", name)
            continue
        write_data_dir(Path(data_dir) / name, utts)
        write_kv(Path(data_dir) / name / "utt2dur", utt2dur)
        minutes = sum(float(d) for d in utt2dur.values()) / 60
        logger.info("%s: %d utterances, %d speakers, %.1f min", Path(data_dir) / name, len(utts),
                    len({u.speaker for u in utts}), minutes)
        out[name] = utts
    return out


def download_an4(target_dir: str | os.PathLike, url: str = AN4_URL) -> Path:
    """Download and unpack the CMU archive into ``target_dir`` (giving ``<target_dir>/an4``), through a temporary
    sibling so an interrupted download never looks complete. :class:`DownloadError` says where to put the data by
    hand when offline."""
    target = Path(target_dir)
    if (target / ARCHIVE_ROOT).exists():
        raise FileExistsError(f"{target / ARCHIVE_ROOT} already exists; remove it or pass it as --an4-dir")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".an4-", dir=target))
    logger.info("downloading %s into %s", url, target)
    try:
        archive = tmp / "an4_sphere.tar.gz"
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")  # "data" refuses absolute paths, links out of tmp, devices
        an4_root(tmp)  # the archive must hold the corpus
        os.replace(tmp / ARCHIVE_ROOT, target / ARCHIVE_ROOT)
    except (OSError, tarfile.TarError) as e:  # urllib's URLError/HTTPError are OSErrors
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise DownloadError(
            f"could not download AN4 from {url} ({e}).\n"
            f"Put the corpus by hand at {default_an4_dir()} (or any folder passed with --an4-dir, or set "
            f"${SHARED_DATA_ENV} to a folder holding an4/), laid out as etc/an4_train.transcription and "
            "wav/an4_clstk/<speaker>/<id>.wav or .sph"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare an4",
        description="Kaldi data directories for CMU AN4: train / dev (whole training speakers) / test, 16 kHz.",
    )
    p.add_argument("--an4-dir", type=Path, default=None,
                   help=f"AN4 folder (etc/, wav/); default ${SHARED_DATA_ENV}/an4 or <repo>/../shared/data/an4")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data directories go")
    p.add_argument("--audio-dir", type=Path, default=Path("data/wav"),
                   help="where converted audio goes (only files that are not 16 kHz mono wav/flac)")
    p.add_argument("--num-dev", type=int, default=DEFAULT_NUM_DEV,
                   help="dev utterances, rounded up to whole training speakers (0: no dev set)")
    p.add_argument("--seed", type=int, default=0, help="which speakers form the dev set")
    p.add_argument("--download-dir", type=Path, default=Path("downloads"),
                   help="when the corpus is absent it is downloaded into <download-dir>/an4")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading when the corpus is absent")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        an4_dir, fetch = resolve_corpus_dir(args.an4_dir, default_an4_dir(), args.download_dir, args.no_download)
        if fetch:
            logger.warning("AN4 not found at %s", args.an4_dir or default_an4_dir())
            download_an4(an4_dir)
        prepare_an4(an4_dir, args.data_dir, args.audio_dir, args.num_dev, args.seed)
    except (OSError, ValueError, DownloadError) as e:
        print(f"narspeech prepare an4: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
