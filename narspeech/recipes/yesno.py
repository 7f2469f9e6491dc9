"""The Kaldi yes/no corpus (OpenSLR 1, www.openslr.org/1): 60 recordings of 8 Hebrew words "yes"/"no", one speaker.

Labels are in the file names (``waves_yesno/0_1_0_0_1_0_1_1.wav``: 1 = "yes", 0 = "no"). Kaldi's recipe sorts the
names and keeps the first half for training and the second half for test; this recipe keeps Kaldi's test half and
carves a dev set out of the end of the train half: 25 train / 5 dev / 30 test for the official 60 files. Audio is
resampled from 8 kHz to 16 kHz so that downstream code sees one rate for every corpus.

``prepare_yesno`` is the library function; ``main`` is the thin CLI behind ``narspeech prepare yesno``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from narspeech.audio.io import resample, save_wav
from narspeech.data.kaldi import Utterance, write_data_dir, write_kv
from narspeech.recipes.fsdd import (
    SHARED_DATA_ENV,
    TARGET_SAMPLE_RATE,
    AudioFileError,
    DownloadError,
    resolve_corpus_dir,
    load_mono,
    scan_folder,
    shared_data_dir,
)

logger = logging.getLogger(__name__)

YESNO_URL = "https://www.openslr.org/resources/1/waves_yesno.tar.gz"
DOWNLOAD_TIMEOUT_S = 120
WAVES_SUBDIR = "waves_yesno"  # the folder the official archive unpacks to
SPEAKER = "global"  # a single speaker, named as in Kaldi's recipe
WORDS = {"0": "no", "1": "yes"}
DEV_FRACTION_OF_TRAIN = 1 / 6  # the last 5 of Kaldi's 30 train files become dev
NAME_PATTERN = re.compile(r"^[01](?:_[01])*\.wav$")


def default_yesno_dir() -> Path:
    return shared_data_dir() / "yesno"


def waves_dir(yesno_dir: str | os.PathLike) -> Path:
    """``<yesno_dir>/waves_yesno`` when it exists, else ``yesno_dir`` itself (the unpacked folder)."""
    yesno_dir = Path(yesno_dir)
    if not yesno_dir.is_dir():
        raise FileNotFoundError(f"yes/no folder {yesno_dir} not found; expected {WAVES_SUBDIR}/0_1_..._1.wav inside it")
    sub = yesno_dir / WAVES_SUBDIR
    return sub if sub.is_dir() else yesno_dir


def transcript(stem: str) -> str:
    """``"0_1_1"`` -> ``"no yes yes"``."""
    return " ".join(WORDS[label] for label in stem.split("_"))


def split_names(names: list[str]) -> dict[str, list[str]]:
    """Kaldi's split of the sorted names (first half train, second half test), with dev = the end of the train half.

    For the official 60 files: 25 train, 5 dev, 30 test.
    """
    names = sorted(names)
    n_train_half = len(names) // 2  # as Kaldi's create_yesno_waves_test_train.pl: line i <= n/2 is train
    n_dev = round(n_train_half * DEV_FRACTION_OF_TRAIN) if n_train_half >= 2 else 0
    n_train = n_train_half - n_dev
    return {
        "train": names[:n_train],
        "dev": names[n_train:n_train_half],
        "test": names[n_train_half:],
    }


def prepare_yesno(
    yesno_dir: str | os.PathLike, data_dir: str | os.PathLike, audio_dir: str | os.PathLike
) -> dict[str, list[Utterance]]:
    """Write ``<data_dir>/{train,dev,test}`` (+ ``utt2dur``) and 16 kHz wavs in ``<audio_dir>/<set>``; return the sets.

    The split is made on all well-named files before reading them, so one unreadable file (reported and skipped)
    never moves another recording from one set into another. Empty sets are not written.
    """
    data_dir, audio_dir = Path(data_dir), Path(audio_dir).resolve()
    folder = waves_dir(yesno_dir)
    paths = {p.name: p for p in scan_folder(folder, NAME_PATTERN)}
    if not paths:
        raise FileNotFoundError(f"{folder}: no files named like 0_1_0_0_1_0_1_1.wav")
    result: dict[str, list[Utterance]] = {}
    for name, files in split_names(list(paths)).items():
        utts, utt2dur = [], {}
        for file_name in files:
            try:
                wave, sr = load_mono(paths[file_name])
            except AudioFileError as e:
                logger.warning("skipping unusable recording: %s", e)
                continue
            wave = resample(wave, sr, TARGET_SAMPLE_RATE).numpy()
            stem = Path(file_name).stem
            wav_path = audio_dir / name / file_name
            wav_path.parent.mkdir(parents=True, exist_ok=True)
            save_wav(wav_path, wave, TARGET_SAMPLE_RATE)
            utts.append(Utterance(stem, str(wav_path), transcript(stem), SPEAKER))
            utt2dur[stem] = f"{len(wave) / TARGET_SAMPLE_RATE:.4f}"
        if not utts:
            logger.warning("set %s is empty; not written", name)
            continue
        write_data_dir(data_dir / name, utts)
        write_kv(data_dir / name / "utt2dur", utt2dur)
        durs = [float(d) for d in utt2dur.values()]
        logger.info("%s: %d utterances, %.1f min, %.2f-%.2f s", data_dir / name, len(utts), sum(durs) / 60,
                    min(durs), max(durs))
        result[name] = utts
    return result


def download_yesno(target_dir: str | os.PathLike) -> Path:
    """Download and unpack ``waves_yesno.tar.gz`` into ``target_dir`` (giving ``<target_dir>/waves_yesno``).

    Unpacks into a temporary sibling first, so an interrupted download never looks like a complete corpus.
    Raises :class:`DownloadError` saying where to put the data by hand when offline.
    """
    target = Path(target_dir)
    if (target / WAVES_SUBDIR).exists():
        raise FileExistsError(f"{target / WAVES_SUBDIR} already exists; remove it or use {target} as --yesno-dir")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".yesno-", dir=target))
    logger.info("downloading %s into %s", YESNO_URL, target)
    try:
        archive = tmp / "waves_yesno.tar.gz"
        with urllib.request.urlopen(YESNO_URL, timeout=DOWNLOAD_TIMEOUT_S) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")  # "data" refuses absolute paths, links out of tmp, devices
        if not (tmp / WAVES_SUBDIR).is_dir():
            raise tarfile.TarError(f"archive has no {WAVES_SUBDIR}/ folder")
        os.replace(tmp / WAVES_SUBDIR, target / WAVES_SUBDIR)
    except (OSError, tarfile.TarError) as e:  # urllib's URLError/HTTPError are OSErrors
        shutil.rmtree(tmp, ignore_errors=True)
        if created:  # an empty folder would pass for an earlier download on the next run
            shutil.rmtree(target, ignore_errors=True)
        raise DownloadError(
            f"could not download the yes/no corpus from {YESNO_URL} ({e}).\n"
            f"Put the data by hand at {default_yesno_dir()} (or any folder passed with --yesno-dir, or set "
            f"${SHARED_DATA_ENV} to a folder holding yesno/), laid out as {WAVES_SUBDIR}/0_1_0_0_1_0_1_1.wav"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare yesno",
        description="Kaldi data directories for the yes/no corpus (OpenSLR 1): 25 train / 5 dev / 30 test, 16 kHz.",
    )
    p.add_argument("--yesno-dir", type=Path, default=None,
                   help=f"folder with {WAVES_SUBDIR}/; default ${SHARED_DATA_ENV}/yesno or <repo>/../shared/data/yesno")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data directories go")
    p.add_argument("--audio-dir", type=Path, default=Path("audio"), help="where the 16 kHz wavs go")
    p.add_argument("--download-dir", type=Path, default=Path("downloads"),
                   help="when the corpus is absent it is downloaded into <download-dir>/yesno")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading when the corpus is absent")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        yesno_dir, fetch = resolve_corpus_dir(
            args.yesno_dir, default_yesno_dir(), args.download_dir, args.no_download
        )
        if fetch:
            logger.warning("yes/no corpus not found at %s", args.yesno_dir or default_yesno_dir())
            download_yesno(yesno_dir)
        prepare_yesno(yesno_dir, args.data_dir, args.audio_dir)
    except (OSError, ValueError, DownloadError) as e:
        print(f"narspeech prepare yesno: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
