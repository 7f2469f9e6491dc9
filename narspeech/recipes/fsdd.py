"""Connected-digit corpus built from the Free Spoken Digit Dataset (FSDD).

Source: github.com/Jakobovski/free-spoken-digit-dataset (CC BY-SA 4.0).

FSDD holds isolated digits, ``recordings/{digit}_{speaker}_{take}.wav`` at 8 kHz. Each utterance made here concatenates
2-7 takes of ONE speaker with short silences between them, resampled to 16 kHz, and is transcribed with lowercase number
words ("seven zero four"). Sets are split BY TAKE (takes 0-4 test, as upstream; 5-9 dev; the rest train), so no
recording heard in training is ever part of a dev/test utterance. ``<data_dir>/<set>/utt2takes`` records which takes
(file stems, in order) each utterance is made of, and ``utt2dur`` its duration in seconds.

``prepare_fsdd`` is the library function; ``main`` is the thin CLI behind ``narspeech prepare fsdd``. The audio helpers
here (:func:`load_mono`, :func:`shared_data_dir`) are shared with the yes/no recipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from narspeech.audio.io import resample, save_wav
from narspeech.data.kaldi import Utterance, write_data_dir, write_kv
from narspeech.progress import logs_above_bars, progress

logger = logging.getLogger(__name__)

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
SHARED_DATA_ENV = "NARSPEECH_SHARED_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]  # parent of the ``narspeech`` package directory
GIT_CLONE_TIMEOUT_S = 900

TARGET_SAMPLE_RATE = 16000  # what the rest of the toolkit (fbank front-ends, vocoders) expects
MIN_TAKES_PER_UTT = 2
MAX_TAKES_PER_UTT = 7
GAP_SECONDS = (0.050, 0.250)  # silence between two digits, drawn uniformly
EDGE_SECONDS = (0.050, 0.150)  # silence before the first and after the last digit, drawn uniformly
TEST_TAKES = range(0, 5)  # FSDD's own test split, kept so results stay comparable with upstream numbers
DEV_TAKES = range(5, 10)
SPLITS = ("train", "dev", "test")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MIN_ID_WIDTH = 4  # zero padding of utterance indices, so ids sort numerically up to 9999 utterances per set

# Speakers are restricted to letters and digits: they become the prefix of Kaldi ids ("<speaker>-<set>-<index>").
TAKE_PATTERN = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<take>[0-9]+)\.wav$")
SET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class AudioFileError(ValueError):
    """An audio file that cannot be read (corrupt, empty, not audio); recipes report and skip it."""


class DownloadError(RuntimeError):
    """A corpus is absent and could not be downloaded; the message says where to put it by hand."""


# ----------------------------------------------------------------------------------------------------------------------
# Shared helpers (also used by the yes/no recipe)


def shared_data_dir() -> Path:
    """The shared real-data folder: ``$NARSPEECH_SHARED_DATA`` if set, else ``<repo root>/../shared/data``."""
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def default_fsdd_dir() -> Path:
    return shared_data_dir() / "fsdd"


def load_mono(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 samples at its own rate (levels untouched).

    Raises :class:`AudioFileError` naming the file when it cannot be used: unreadable, empty, NaN/Inf, or several
    channels (mixing them down would silently change a corpus that is documented as mono).
    """
    from narspeech.audio.io import AudioError, read_audio

    try:
        return read_audio(path)
    except AudioError as e:
        raise AudioFileError(str(e)) from None


def scan_folder(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Files of ``folder`` whose name matches ``pattern`` (sorted); warns naming every other file.

    Hidden files and README files are ignored silently: they ship with the corpora.
    """
    matched, skipped = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name.upper().startswith("README") or not p.is_file():
            continue
        (matched if pattern.match(p.name) else skipped).append(p)
    for p in skipped:
        logger.warning("skipping %s: name does not match %s", p, pattern.pattern)
    return matched


def check_set_name(name: str) -> str:
    if not SET_NAME_PATTERN.match(name) or name in (".", ".."):
        raise ValueError(
            f"set name {name!r} must be letters, digits, '_', '.' or '-' (it becomes a folder name and part of ids)"
        )
    return name


# ----------------------------------------------------------------------------------------------------------------------
# FSDD takes


@dataclass(frozen=True)
class FsddTake:
    """One FSDD recording: ``{digit}_{speaker}_{take}.wav``."""

    digit: int
    speaker: str
    take: int
    path: Path

    @property
    def stem(self) -> str:
        return self.path.stem


def split_of_take(take: int) -> str:
    """The set a take index belongs to: 0-4 test, 5-9 dev, the rest train."""
    if take in TEST_TAKES:
        return "test"
    if take in DEV_TAKES:
        return "dev"
    return "train"


def recordings_dir(fsdd_dir: str | os.PathLike) -> Path:
    """``<fsdd_dir>/recordings`` when it exists, else ``fsdd_dir`` itself (a bare folder of FSDD-named wavs)."""
    fsdd_dir = Path(fsdd_dir)
    if not fsdd_dir.is_dir():
        raise FileNotFoundError(
            f"FSDD folder {fsdd_dir} not found; expected recordings/{{digit}}_{{speaker}}_{{take}}.wav inside it"
        )
    rec = fsdd_dir / "recordings"
    return rec if rec.is_dir() else fsdd_dir


def scan_fsdd(fsdd_dir: str | os.PathLike) -> list[FsddTake]:
    """All takes of an FSDD-layout folder, sorted by file name; speakers come from the file names."""
    folder = recordings_dir(fsdd_dir)
    takes = []
    for p in scan_folder(folder, TAKE_PATTERN):
        m = TAKE_PATTERN.match(p.name)
        assert m is not None
        takes.append(FsddTake(int(m["digit"]), m["speaker"], int(m["take"]), p))
    if not takes:
        raise FileNotFoundError(f"{folder}: no files named {{digit}}_{{speaker}}_{{take}}.wav")
    return takes


def _load_takes(takes: Sequence[FsddTake]) -> dict[FsddTake, np.ndarray]:
    """Load and resample each take once (16 kHz float32); unreadable files are reported and left out."""
    audio: dict[FsddTake, np.ndarray] = {}
    with logs_above_bars():
        for t in progress(takes, desc="load takes", unit="take"):
            try:
                wave, sr = load_mono(t.path)
            except AudioFileError as e:
                logger.warning("skipping unusable take: %s", e)
                continue
            audio[t] = resample(wave, sr, TARGET_SAMPLE_RATE).numpy()
    if len(audio) < len(takes):
        logger.warning("%d of %d takes could not be used (named above)", len(takes) - len(audio), len(takes))
    return audio


def _pools_by_speaker(takes: Sequence[FsddTake]) -> dict[str, list[FsddTake]]:
    pools: dict[str, list[FsddTake]] = {}
    for t in sorted(takes, key=lambda t: t.stem):
        pools.setdefault(t.speaker, []).append(t)
    return pools


def _sample_groups(pools: dict[str, list[FsddTake]], num: int, rng: random.Random) -> list[list[FsddTake]]:
    """``num`` random take sequences: a uniform speaker, then 2-7 distinct takes of that speaker (repeats only when the
    speaker has fewer takes than needed)."""
    speakers = sorted(pools)
    groups = []
    for _ in range(num):
        pool = pools[rng.choice(speakers)]
        n = rng.randint(MIN_TAKES_PER_UTT, MAX_TAKES_PER_UTT)
        groups.append(rng.sample(pool, n) if len(pool) >= n else rng.choices(pool, k=n))
    return groups


def _partition_groups(pools: dict[str, list[FsddTake]], rng: random.Random) -> list[list[FsddTake]]:
    """Cut each speaker's shuffled takes into sequences of 2-7 so that every take is used exactly once.

    Used for a single evaluation set (e.g. unseen speakers): full coverage, and no recording counted twice.
    """
    groups = []
    for speaker in sorted(pools):
        pool = list(pools[speaker])
        if len(pool) < MIN_TAKES_PER_UTT:
            logger.warning("speaker %s has only %d readable take(s); left out", speaker, len(pool))
            continue
        rng.shuffle(pool)
        while pool:
            n = rng.randint(MIN_TAKES_PER_UTT, min(MAX_TAKES_PER_UTT, len(pool)))
            if 0 < len(pool) - n < MIN_TAKES_PER_UTT:  # never leave a remainder too short for an utterance
                n = n + 1 if n < MAX_TAKES_PER_UTT else n - 1
            groups.append(pool[:n])
            pool = pool[n:]
    return groups


def _render(group: Sequence[FsddTake], audio: dict[FsddTake, np.ndarray], rng: random.Random) -> np.ndarray:
    """Concatenate takes with uniform random silences (edges, then gaps between digits)."""

    def silence(bounds: tuple[float, float]) -> np.ndarray:
        return np.zeros(round(rng.uniform(*bounds) * TARGET_SAMPLE_RATE), dtype=np.float32)

    parts = [silence(EDGE_SECONDS)]
    for i, take in enumerate(group):
        if i:
            parts.append(silence(GAP_SECONDS))
        parts.append(audio[take])
    parts.append(silence(EDGE_SECONDS))
    return np.concatenate(parts)


def _write_set(
    name: str,
    groups: Sequence[Sequence[FsddTake]],
    audio: dict[FsddTake, np.ndarray],
    data_dir: Path,
    audio_dir: Path,
    rng: random.Random,
) -> list[Utterance]:
    """Render and write the audio of one set, then its data directory with ``utt2takes`` and ``utt2dur``."""
    wav_dir = audio_dir / name
    wav_dir.mkdir(parents=True, exist_ok=True)
    width = max(MIN_ID_WIDTH, len(str(len(groups) - 1)))
    utts, utt2takes, utt2dur = [], {}, {}
    for index, group in enumerate(groups):
        speaker = group[0].speaker
        utt_id = f"{speaker}-{name}-{index:0{width}d}"
        wave = _render(group, audio, rng)
        wav_path = wav_dir / f"{utt_id}.wav"
        save_wav(wav_path, wave, TARGET_SAMPLE_RATE)
        text = " ".join(DIGIT_WORDS[t.digit] for t in group)
        utts.append(Utterance(utt_id, str(wav_path), text, speaker))
        utt2takes[utt_id] = " ".join(t.stem for t in group)
        utt2dur[utt_id] = f"{len(wave) / TARGET_SAMPLE_RATE:.4f}"
    out = data_dir / name
    write_data_dir(out, utts)
    write_kv(out / "utt2takes", utt2takes)
    write_kv(out / "utt2dur", utt2dur)
    durs = [float(d) for d in utt2dur.values()]
    logger.info(
        "%s: %d utterances, %.2f h, %.2f-%.2f s (mean %.2f s)",
        out, len(utts), sum(durs) / 3600, min(durs), max(durs), sum(durs) / len(durs),
    )
    return utts


def prepare_fsdd(
    fsdd_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    num_train: int = 3000,
    num_dev: int = 300,
    num_test: int = 300,
    seed: int = 0,
    single_set: str | None = None,
) -> dict[str, list[Utterance]]:
    """Build connected-digit sets from an FSDD-layout folder; return ``{set name: utterances}``.

    Without ``single_set``: ``train``/``dev``/``test`` of the requested sizes (a size of 0 skips that set), each made
    only of takes of its split. With ``single_set=NAME``: one set ``NAME`` that uses every readable take of the folder
    exactly once (for an extra evaluation set such as unseen speakers); the sizes are then ignored.
    Audio goes to ``<audio_dir>/<set>/<utt_id>.wav`` (16 kHz, 16-bit), data directories to ``<data_dir>/<set>``.
    Each set draws from its own generator seeded by ``(seed, set)``: changing one size leaves the other sets unchanged.
    """
    data_dir, audio_dir = Path(data_dir), Path(audio_dir).resolve()
    for n in (num_train, num_dev, num_test):
        if n < 0:
            raise ValueError(f"set sizes must be >= 0, got {n}")
    sizes = {"train": num_train, "dev": num_dev, "test": num_test}
    takes = scan_fsdd(fsdd_dir)
    # 1. Choose the takes each set may use.
    if single_set is not None:
        wanted = {check_set_name(single_set): list(takes)}
    else:
        wanted = {s: [t for t in takes if split_of_take(t.take) == s] for s in SPLITS if sizes[s] > 0}
    # 2. Load + resample every needed take once; later steps only index this cache.
    audio = _load_takes([t for ts in wanted.values() for t in ts])
    # 3. Draw the utterances of each set and write them.
    result: dict[str, list[Utterance]] = {}
    for name, set_takes in wanted.items():
        pools = _pools_by_speaker([t for t in set_takes if t in audio])
        if not pools:
            raise ValueError(
                f"{fsdd_dir}: no readable takes for set {name!r}"
                + ("" if single_set else f" (takes {_take_range_text(name)}); use --single-set for such a folder")
            )
        rng = random.Random(f"fsdd-{seed}-{name}")  # str seeds are hashed with SHA-512: stable across runs
        if single_set is not None:
            groups = _partition_groups(pools, rng)
        else:
            groups = _sample_groups(pools, sizes[name], rng)
        result[name] = _write_set(name, groups, audio, data_dir, audio_dir, rng)
    return result


def _take_range_text(split: str) -> str:
    if split == "test":
        return f"{TEST_TAKES.start}-{TEST_TAKES.stop - 1}"
    if split == "dev":
        return f"{DEV_TAKES.start}-{DEV_TAKES.stop - 1}"
    return f">= {DEV_TAKES.stop}"


# ----------------------------------------------------------------------------------------------------------------------
# Download and CLI


def download_fsdd(target_dir: str | os.PathLike) -> Path:
    """Shallow-clone FSDD into ``target_dir`` (which must not exist yet) and return it.

    Clones into a temporary sibling first so that an interrupted clone never looks like a complete corpus.
    Raises :class:`DownloadError` saying where to put the data by hand when git or the network fails.
    """
    target = Path(target_dir)
    if target.exists():
        raise FileExistsError(f"{target} already exists; remove it or use it as --fsdd-dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    logger.info("downloading FSDD: git clone --depth 1 %s %s", FSDD_URL, target)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # fail instead of waiting for credentials
    try:
        subprocess.run(
            ["git", "clone", "--quiet", "--depth", "1", FSDD_URL, str(tmp / "repo")],
            check=True, capture_output=True, text=True, timeout=GIT_CLONE_TIMEOUT_S, env=env,
        )
        os.replace(tmp / "repo", target)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", None) or str(e)
        raise DownloadError(
            f"could not download FSDD from {FSDD_URL} ({str(detail).strip()}).\n"
            f"Put the data by hand at {default_fsdd_dir()} (or any folder passed with --fsdd-dir, or set "
            f"${SHARED_DATA_ENV} to a folder holding fsdd/), laid out as recordings/{{digit}}_{{speaker}}_{{take}}.wav"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare fsdd",
        description="Connected-digit Kaldi data directories from the Free Spoken Digit Dataset (split by take: "
        "0-4 test, 5-9 dev, rest train), audio resampled to 16 kHz.",
    )
    p.add_argument("--fsdd-dir", type=Path, default=None,
                   help=f"FSDD folder (with recordings/); default ${SHARED_DATA_ENV}/fsdd, "
                   "else <repo root>/../shared/data/fsdd")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data directories go")
    p.add_argument("--audio-dir", type=Path, default=Path("audio"), help="where the 16 kHz wavs go")
    p.add_argument("--download-dir", type=Path, default=Path("downloads"),
                   help="when the FSDD folder is absent it is cloned into <download-dir>/fsdd")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading when FSDD is absent")
    p.add_argument("--num-train", type=int, default=3000)
    p.add_argument("--num-dev", type=int, default=300)
    p.add_argument("--num-test", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--single-set", metavar="NAME", default=None,
                   help="build only <data-dir>/NAME from ALL takes of the folder, each take used once "
                   "(e.g. other speakers as an extra test set)")
    return p


def resolve_corpus_dir(
    given: Path | None, default: Path, download_dir: Path, no_download: bool
) -> tuple[Path, bool]:
    """The corpus folder to use, and whether it must be downloaded first (shared with the yes/no recipe)."""
    if given is not None and given.exists():
        return given, False
    if given is None and default.exists():
        return default, False
    fallback = download_dir / default.name
    if fallback.exists():  # downloaded by an earlier run
        logger.info("corpus folder %s not found; using the earlier download %s", given or default, fallback)
        return fallback, False
    if no_download:
        raise FileNotFoundError(f"corpus folder {given or default} not found (and --no-download was given)")
    return fallback, True


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        fsdd_dir, fetch = resolve_corpus_dir(args.fsdd_dir, default_fsdd_dir(), args.download_dir, args.no_download)
        if fetch:
            logger.warning("FSDD not found at %s", args.fsdd_dir or default_fsdd_dir())
            download_fsdd(fsdd_dir)
        prepare_fsdd(fsdd_dir, args.data_dir, args.audio_dir, args.num_train, args.num_dev, args.num_test,
                     args.seed, args.single_set)
    except (OSError, ValueError, DownloadError) as e:
        print(f"narspeech prepare fsdd: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
