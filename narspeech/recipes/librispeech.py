"""LibriSpeech (Panayotov, Chen, Povey & Khudanpur, ICASSP 2015; www.openslr.org/12, CC BY 4.0).

Download (OpenSLR 12 archives, resumable, checked against the official sizes and md5 sums) and conversion of the
corpus layout into Kaldi data directories, one per subset, plus merged sets such as ``train_960``.

Corpus layout (what the archives unpack to)::

    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac

Each transcript line is ``<speaker>-<chapter>-<utt> TEXT`` (upper case, apostrophes kept). A data directory
``<data_dir>/<subset with '_'>`` (``train-clean-100`` -> ``train_clean_100``, ESPnet's names) gets ``wav.scp`` with
absolute paths to the flac files (read directly by soundfile, no conversion), ``text`` (lower-cased by default, like
every other narspeech corpus, so one model's output can be scored or fed to another without case mismatches; WER is
unchanged since the mapping is one-to-one), ``utt2spk``/``spk2utt`` with the reader as speaker (Kaldi's recipe uses
reader-chapter instead; nothing here depends on it), and ``utt2dur`` from the flac headers.

A missing or unreadable flac, a malformed transcript line or a duplicate utterance id is reported naming the file
(and line) and skipped; the rest of the subset is still prepared.

``prepare_librispeech`` / ``download_subset`` are the library functions; ``main`` is the thin CLI behind
``narspeech prepare librispeech``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from narspeech.data.kaldi import Utterance, read_data_dir, read_kv, write_data_dir, write_kv

# Nothing heavy at module level: the chapter-scanning worker processes import this module, and the shared
# DownloadError lives in narspeech.recipes.fsdd, which imports torch (seconds per worker); it is imported where used.

logger = logging.getLogger(__name__)

OPENSLR_URL = "https://www.openslr.org/resources/12"  # mirrors: openslr.elda.org (EU), openslr.trmal.net (US)
CORPUS_DIR = "LibriSpeech"  # the top folder of every archive
COMPLETE_MARKER = ".complete"  # in <subset>/ once fully unpacked; the name Kaldi's download_and_untar.sh uses
SAMPLE_RATE = 16000

# (bytes, md5) of the final release's archives: the md5 values are those of OpenSLR's resources/12/md5sum.txt and
# the sizes those listed in Kaldi's egs/librispeech/s5/local/download_and_untar.sh.
ARCHIVES: dict[str, tuple[int, str]] = {
    "dev-clean": (337926286, "42e2234ba48799c1f50f24a7926300a1"),
    "dev-other": (314305928, "c8d0bcc9cca99d4f8b62fcc847357931"),
    "test-clean": (346663984, "32fa31d27d2e1cad72775fee3f4849a9"),
    "test-other": (328757843, "fb5a50374b501bb3bac4815ee91d3135"),
    "train-clean-100": (6387309499, "2a93770f6d5c6c964bc36631d331a522"),
    "train-clean-360": (23049477885, "c0e676e450a7ff2f54aeade5171606fa"),
    "train-other-500": (30593501606, "d1a0fd59409feb2c614ce4d30c387708"),
}
SUBSETS = tuple(ARCHIVES)
COMBINED = {"train_960": ("train-clean-100", "train-clean-360", "train-other-500")}

DOWNLOAD_TIMEOUT_S = 60  # per socket operation, not for the whole file
DOWNLOAD_CHUNK = 1 << 20
PROGRESS_INTERVAL_S = 30.0
HTTP_PARTIAL_CONTENT = 206

ID_PART = r"[0-9]+"
TRANS_NAME = re.compile(rf"^(?P<speaker>{ID_PART})-(?P<chapter>{ID_PART})\.trans\.txt$")
TRANS_LINE = re.compile(rf"^(?P<utt>(?P<speaker>{ID_PART})-(?P<chapter>{ID_PART})-{ID_PART})\s+(?P<text>\S.*?)\s*$")
COMBINE_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)=(?P<parts>[^=]+)$")


def kaldi_name(subset: str) -> str:
    """``train-clean-100`` -> ``train_clean_100`` (the data directory name)."""
    return subset.replace("-", "_")


# ----------------------------------------------------------------------------------------------------------------------
# Preparation


@dataclass(frozen=True)
class SetResult:
    """One written data directory and what was left out of it."""

    name: str
    path: Path
    num_utts: int
    hours: float
    skipped: tuple[str, ...]  # one message per left-out utterance or file, naming the file (and line)


def subset_dir(root: str | os.PathLike, subset: str) -> Path | None:
    """``<root>/LibriSpeech/<subset>``, or ``<root>/<subset>`` when ``root`` is the LibriSpeech folder itself."""
    root = Path(root)
    for cand in (root / CORPUS_DIR / subset, root / subset):
        if cand.is_dir():
            return cand
    return None


def _audio_problem(path: Path) -> tuple[float | None, str | None]:
    """(duration in seconds, None), or (None, why the file cannot be used)."""
    import soundfile as sf

    if not path.is_file():
        return None, "missing"
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, TypeError)
        return None, f"cannot read audio: {e}"
    if info.channels != 1 or info.samplerate != SAMPLE_RATE:
        return None, f"expected 16 kHz mono, got {info.samplerate} Hz x {info.channels} channels"
    if info.frames == 0:
        return None, "no samples"
    return info.frames / info.samplerate, None


def scan_chapter(chapter_dir: Path, lowercase: bool = True) -> tuple[list[tuple[Utterance, float]], list[str]]:
    """The usable utterances of one ``<speaker>/<chapter>`` folder with their durations, and the problems found.

    Every problem names the file (and line). An utterance is kept only when its transcript line is well formed, its
    id is new and belongs to this folder's speaker and chapter, and its flac can be read as 16 kHz mono.
    """
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    if not trans.is_file():
        found = sorted(p.name for p in chapter_dir.glob("*.trans.txt"))
        return [], [f"{trans}: transcript file missing" + (f" (found {found})" if found else "") + "; chapter skipped"]
    problems: list[str] = []
    seen: dict[str, int] = {}
    utts: list[tuple[Utterance, float]] = []
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{trans}: cannot read: {e}; chapter skipped"]
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = TRANS_LINE.match(line)
        if m is None:
            problems.append(f"{trans}:{lineno}: malformed line (expected '<speaker>-<chapter>-<utt> TEXT'): {line!r}")
            continue
        utt_id = m["utt"]
        if (m["speaker"], m["chapter"]) != (speaker, chapter):
            problems.append(f"{trans}:{lineno}: utterance {utt_id} does not belong to {speaker}/{chapter}; skipped")
            continue
        if utt_id in seen:
            problems.append(f"{trans}:{lineno}: duplicate utterance id {utt_id} (first on line {seen[utt_id]}); "
                            "skipped")
            continue
        seen[utt_id] = lineno
        flac = chapter_dir / f"{utt_id}.flac"
        dur, why = _audio_problem(flac)
        if why is not None:
            problems.append(f"{trans}:{lineno}: utterance {utt_id}: {flac} {why}; skipped")
            continue
        text = " ".join(m["text"].split())
        utts.append((Utterance(utt_id, str(flac.resolve()), text.lower() if lowercase else text, speaker), dur))
    untranscribed = sorted(p.name for p in chapter_dir.glob("*.flac") if p.stem not in seen)
    if untranscribed:
        problems.append(f"{trans}: no transcript line for {len(untranscribed)} flac file(s), e.g. {untranscribed[0]}")
    return utts, problems


def _scan_chapter_job(job: tuple[str, bool]) -> ChapterScan:  # a module-level function: picklable for the pool
    return scan_chapter(Path(job[0]), job[1])


def _chapter_dirs(folder: Path) -> tuple[list[Path], list[str]]:
    """``<speaker>/<chapter>`` folders of a subset (sorted), and the unexpected entries (hidden files ignored)."""
    chapters, odd = [], []
    for spk in sorted(folder.iterdir()):
        if spk.name.startswith("."):
            continue
        if not (spk.is_dir() and spk.name.isdigit()):
            odd.append(f"{spk}: not a <speaker> folder; ignored")
            continue
        for ch in sorted(spk.iterdir()):
            if ch.name.startswith("."):
                continue
            if ch.is_dir() and ch.name.isdigit():
                chapters.append(ch)
            else:
                odd.append(f"{ch}: not a <chapter> folder; ignored")
    return chapters, odd


ChapterScan = tuple[list[tuple[Utterance, float]], list[str]]  # (usable utterances with durations, problems)


def _map_chapters(chapters: Sequence[Path], lowercase: bool, nj: int) -> list[ChapterScan]:
    """Scan chapters, in ``nj`` worker processes when there is enough work (flac headers dominate on big subsets)."""
    jobs = [(str(c), lowercase) for c in chapters]
    if nj <= 1 or len(jobs) < 2 * nj:
        return [_scan_chapter_job(j) for j in jobs]
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold threads (torch, BLAS)
    with ProcessPoolExecutor(max_workers=nj, mp_context=ctx) as pool:
        return list(pool.map(_scan_chapter_job, jobs, chunksize=max(1, len(jobs) // (8 * nj))))


def _write_set(out: Path, items: Sequence[tuple[Utterance, float]], skipped: Sequence[str]) -> SetResult:
    write_data_dir(out, [u for u, _ in items])
    write_kv(out / "utt2dur", {u.utt_id: f"{d:.4f}" for u, d in items})
    hours = sum(d for _, d in items) / 3600
    logger.info("%s: %d utterances, %d speakers, %.2f h, %d skipped", out, len(items),
                len({u.speaker for u, _ in items}), hours, len(skipped))
    return SetResult(out.name, out, len(items), hours, tuple(skipped))


def prepare_subset(
    root: str | os.PathLike, subset: str, data_dir: str | os.PathLike, nj: int = 1, lowercase: bool = True
) -> SetResult:
    """Write ``<data_dir>/<kaldi_name(subset)>`` from ``<root>/LibriSpeech/<subset>``; problems are logged and skipped.

    Raises ``FileNotFoundError`` when the subset folder is absent, ``ValueError`` when no utterance is usable.
    """
    folder = subset_dir(root, subset)
    if folder is None:
        raise FileNotFoundError(
            f"LibriSpeech subset {subset!r} not found: expected {Path(root) / CORPUS_DIR / subset} "
            "(download it with --download, or point --librispeech-dir at the folder holding LibriSpeech/)"
        )
    chapters, skipped = _chapter_dirs(folder)
    items: list[tuple[Utterance, float]] = []
    where: dict[str, str] = {}
    for (utts, problems), chapter in zip(_map_chapters(chapters, lowercase, nj), chapters):
        skipped += problems
        for u, d in utts:
            if u.utt_id in where:  # the same id in two chapter folders (a misplaced transcript)
                skipped.append(f"{chapter}: duplicate utterance id {u.utt_id} (also in {where[u.utt_id]}); skipped")
                continue
            where[u.utt_id] = str(chapter)
            items.append((u, d))
    for msg in skipped:
        logger.warning("%s", msg)
    if not items:
        raise ValueError(f"{folder}: no usable utterance ({len(skipped)} problem(s), see the warnings above)")
    return _write_set(Path(data_dir) / kaldi_name(subset), items, skipped)


def combine_data_dirs(out: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> SetResult:
    """Merge data directories into ``out`` (``utt2dur`` too); an id already taken is reported and left out."""
    out = Path(out)
    items: list[tuple[Utterance, float]] = []
    origin: dict[str, Path] = {}
    skipped: list[str] = []
    for src in map(Path, sources):
        durs = {k: float(v) for k, v in read_kv(src / "utt2dur").items()} if (src / "utt2dur").is_file() else {}
        for u in read_data_dir(src):
            if u.utt_id in origin:
                skipped.append(f"{src}: duplicate utterance id {u.utt_id} (already in {origin[u.utt_id]}); skipped")
                continue
            if u.utt_id not in durs:
                raise ValueError(f"{src / 'utt2dur'}: no duration for {u.utt_id} (prepare the source again)")
            origin[u.utt_id] = src
            items.append((u, durs[u.utt_id]))
    for msg in skipped:
        logger.warning("%s", msg)
    return _write_set(out, items, skipped)


def prepare_librispeech(
    root: str | os.PathLike,
    data_dir: str | os.PathLike,
    subsets: Sequence[str] = SUBSETS,
    combine: Mapping[str, Sequence[str]] | None = None,
    nj: int = 1,
    lowercase: bool = True,
) -> tuple[dict[str, SetResult], list[str]]:
    """Prepare each subset, then each merged set ``{name: [subsets]}``; return the written sets and the failures.

    A subset that cannot be prepared (absent, nothing usable) is reported in the failures and the others go on; a
    merged set is written only when all its parts were.
    """
    unknown = sorted(set(subsets).union(*(combine or {}).values()) - set(SUBSETS))
    if unknown:
        raise ValueError(f"unknown LibriSpeech subset(s) {unknown}; valid: {', '.join(SUBSETS)}")
    results: dict[str, SetResult] = {}
    failures: list[str] = []
    for subset in dict.fromkeys(subsets):
        try:
            results[kaldi_name(subset)] = prepare_subset(root, subset, data_dir, nj, lowercase)
        except (OSError, ValueError) as e:
            logger.error("%s", e)
            failures.append(str(e))
    for name, parts in (combine or {}).items():
        missing = [p for p in parts if kaldi_name(p) not in results]
        if missing:
            failures.append(f"{name}: not written, its part(s) {missing} were not prepared")
            continue
        results[name] = combine_data_dirs(Path(data_dir) / name, [Path(data_dir) / kaldi_name(p) for p in parts])
    return results, failures


# ----------------------------------------------------------------------------------------------------------------------
# Download


def file_md5(path: str | os.PathLike) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * DOWNLOAD_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | os.PathLike, size: int | None = None, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (renamed only once complete and verified).

    An existing ``.part`` is resumed with an HTTP Range request; a server (or ``file://``) that answers with the whole
    file instead restarts it from zero. A wrong size or md5 removes the partial file and raises ``DownloadError``.
    """
    from narspeech.recipes.fsdd import DownloadError

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # cannot be a prefix of the right file
        have = 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    if size is None or have < size:
        try:
            with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as r:
                resumed = have > 0 and getattr(r, "status", None) == HTTP_PARTIAL_CONTENT
                if have and not resumed:
                    logger.info("%s: the server sent the whole file; restarting from zero", url)
                    have = 0
                logger.info("downloading %s -> %s%s", url, dest, f" (resuming at {have} bytes)" if have else "")
                done, last = have, time.monotonic()
                with open(part, "ab" if resumed else "wb") as f:
                    while chunk := r.read(DOWNLOAD_CHUNK):
                        f.write(chunk)
                        done += len(chunk)
                        if time.monotonic() - last > PROGRESS_INTERVAL_S:
                            last = time.monotonic()
                            logger.info("%s: %.1f%s MB", dest.name, done / 1e6, f" / {size / 1e6:.1f}" if size else "")
        except OSError as e:  # URLError, HTTPError, timeouts; the .part stays for the next attempt
            raise DownloadError(f"could not download {url} ({e}); run again to resume from {part}") from e
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{url}: got {got} bytes, expected {size}; the partial file was removed, run again")
    if md5 is not None:
        digest = file_md5(part)
        if digest != md5:
            part.unlink()
            raise DownloadError(f"{url}: md5 {digest} does not match the official {md5}; removed, run again")
    os.replace(part, dest)
    return dest


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, top: str = CORPUS_DIR) -> None:
    """Unpack ``archive`` into ``dest``; every member must lie under ``top/``, and tarfile's ``data`` filter refuses
    absolute paths, ``..``, links leaving ``dest`` and device files."""
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if not parts or parts[0] != top or ".." in parts:
                raise tarfile.TarError(f"{archive}: member {m.name!r} is outside {top}/; not a LibriSpeech archive")
        tar.extractall(dest, filter="data")


def download_subset(
    subset: str,
    root: str | os.PathLike,
    base_url: str = OPENSLR_URL,
    checksums: Mapping[str, tuple[int, str]] | None = None,
    keep_archive: bool = False,
) -> Path:
    """Make ``<root>/LibriSpeech/<subset>`` exist: nothing to do when it is already there; else download (resumable)
    ``<base_url>/<subset>.tar.gz`` into ``<root>``, check it (``checksums``: the official sizes/md5 by default) and
    unpack it atomically (a temporary folder renamed into place, with the ``.complete`` marker already inside).
    """
    from narspeech.recipes.fsdd import DownloadError

    if subset not in ARCHIVES:
        raise ValueError(f"unknown LibriSpeech subset {subset!r}; valid: {', '.join(SUBSETS)}")
    root = Path(root)
    present = subset_dir(root, subset)
    if present is not None:
        if (present / COMPLETE_MARKER).is_file():
            logger.info("%s: already downloaded and unpacked", present)
        else:  # made by hand or by another toolkit; our own unpacking never leaves a half subset in place
            logger.info("%s: present (no %s marker); using it as it is", present, COMPLETE_MARKER)
        return present
    target = root / CORPUS_DIR / subset
    size, md5 = (checksums if checksums is not None else ARCHIVES).get(subset, (None, None))
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{subset}.tar.gz"
    if archive.is_file():  # kept from an earlier run or put there by hand: only used when it checks out
        wrong_size = size is not None and archive.stat().st_size != size
        if wrong_size or (md5 is not None and file_md5(archive) != md5):
            logger.warning("%s: %s does not match the official one; downloading again", archive,
                           "size" if wrong_size else "md5")
            archive.unlink()
    if not archive.is_file():
        fetch(f"{base_url.rstrip('/')}/{subset}.tar.gz", archive, size, md5)
    tmp = Path(tempfile.mkdtemp(prefix=f".{subset}-", dir=root))
    try:
        logger.info("unpacking %s", archive)
        try:
            safe_extract(archive, tmp)
        except (tarfile.TarError, OSError, EOFError) as e:  # EOFError: truncated gzip stream
            raise DownloadError(f"{archive}: cannot unpack ({e}); remove it and run again") from e
        unpacked = tmp / CORPUS_DIR / subset
        if not unpacked.is_dir():
            raise DownloadError(f"{archive}: no {CORPUS_DIR}/{subset}/ inside")
        (unpacked / COMPLETE_MARKER).write_text(f"{archive.name}\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        for doc in sorted((tmp / CORPUS_DIR).glob("*.TXT")):  # README, SPEAKERS, CHAPTERS, BOOKS, LICENSE
            if not (target.parent / doc.name).exists():
                os.replace(doc, target.parent / doc.name)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_archive:
        archive.unlink()
    return target


# ----------------------------------------------------------------------------------------------------------------------
# CLI


def parse_combine(specs: Iterable[str]) -> dict[str, list[str]]:
    """``["train_960=train-clean-100,train-clean-360,train-other-500"]`` -> ``{name: [subsets]}``; bare known names
    (``train_960``) stand for their usual parts."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        if spec in COMBINED:
            out[spec] = list(COMBINED[spec])
            continue
        m = COMBINE_SPEC.match(spec)
        if m is None:
            raise ValueError(f"--combine {spec!r}: expected NAME=SUBSET,SUBSET,... or one of {sorted(COMBINED)}")
        out[m["name"]] = [p.strip() for p in m["parts"].split(",") if p.strip()]
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="narspeech prepare librispeech",
        description="LibriSpeech (OpenSLR 12) -> Kaldi data directories (one per subset, ESPnet names such as "
        "data/train_clean_100), optionally downloading the subsets first.",
    )
    p.add_argument("--librispeech-dir", type=Path, required=True,
                   help=f"folder holding {CORPUS_DIR}/<subset>/ (or the {CORPUS_DIR} folder itself); "
                   "downloads go here")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="where the data directories go")
    p.add_argument("--subsets", nargs="+", choices=SUBSETS, default=None,
                   help="subsets to prepare (default: every subset present); required with --download")
    p.add_argument("--combine", nargs="+", default=[], metavar="NAME=SUBSET,...",
                   help="merged sets to write after the subsets, e.g. train_960 (= the three train subsets)")
    p.add_argument("--nj", type=int, default=1, help="worker processes reading the flac headers")
    p.add_argument("--keep-case", action="store_true", help="keep the corpus's upper-case text (default: lower case)")
    p.add_argument("--download", action="store_true", help="download and unpack the absent subsets first")
    p.add_argument("--download-only", action="store_true", help="download and unpack the absent subsets, then stop")
    p.add_argument("--mirror", default=OPENSLR_URL,
                   help=f"base URL of the archives (default {OPENSLR_URL}; e.g. https://openslr.elda.org/resources/12)")
    p.add_argument("--keep-archives", action="store_true", help="keep the .tar.gz files after unpacking")
    return p


def main(argv: list[str] | None = None) -> int:
    from narspeech.recipes.fsdd import DownloadError

    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    prog = "narspeech prepare librispeech"
    try:
        combine = parse_combine(args.combine)
        subsets = args.subsets
        if args.download or args.download_only:
            if not subsets:
                raise ValueError("--download needs --subsets (which archives to fetch)")
            for s in dict.fromkeys([*subsets, *(p for parts in combine.values() for p in parts)]):
                download_subset(s, args.librispeech_dir, args.mirror, keep_archive=args.keep_archives)
            if args.download_only:
                return 0
        if subsets is None:
            subsets = [s for s in SUBSETS if subset_dir(args.librispeech_dir, s) is not None]
            if not subsets:
                raise FileNotFoundError(f"no LibriSpeech subset under {args.librispeech_dir} "
                                        f"(expected {CORPUS_DIR}/<subset>/, e.g. {CORPUS_DIR}/dev-clean/)")
            logger.info("subsets found: %s", " ".join(subsets))
        parts = [p for ps in combine.values() for p in ps]
        results, failures = prepare_librispeech(args.librispeech_dir, args.data_dir, [*subsets, *parts], combine,
                                                args.nj, lowercase=not args.keep_case)
    except (OSError, ValueError, DownloadError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    for r in results.values():
        note = f", {len(r.skipped)} skipped (see the warnings)" if r.skipped else ""
        print(f"{r.path}: {r.num_utts} utterances, {r.hours:.2f} h{note}")
    for f in failures:
        print(f"{prog}: error: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
