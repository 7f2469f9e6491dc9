"""Kaldi/ESPnet data directories: ``wav.scp``, ``text``, ``utt2spk`` (+ ``spk2utt``) and optional ``segments``.

Readers return immutable records; :func:`validate_data_dir` checks a directory in the spirit of Kaldi's
``utils/validate_data_dir.sh`` and names the file, line and utterance of every problem it finds.
Piped ``wav.scp`` entries (``cmd |``) are not supported: give a path to an audio file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


class DataDirError(ValueError):
    """A malformed data directory; the message names the file and line or utterance."""


@dataclass(frozen=True)
class Segment:
    recording_id: str
    start: float  # seconds
    end: float  # seconds; -1 means until the end of the recording


@dataclass(frozen=True)
class Utterance:
    """One utterance of a data directory."""

    utt_id: str
    audio: str  # path of the audio file (absolute, or relative to the cwd of the reader)
    text: str | None
    speaker: str
    segment: Segment | None = None


def read_kv(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi ``key value...`` file in order; duplicate keys and missing values are errors."""
    path = Path(path)
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise DataDirError(f"{path}:{lineno}: empty line")
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataDirError(f"{path}:{lineno}: utterance {key!r} has no value")
            if key in out:
                raise DataDirError(f"{path}:{lineno}: duplicate id {key!r}")
            out[key] = value
    return out


def read_scp_lenient(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A ``wav.scp`` read for batch jobs that skip what they cannot use: ``(entries, problems)``.

    ``entries``: ``(id, audio path)`` in file order. ``problems``: ``(item, why)`` for each line that cannot be used
    (no path, a piped command, an id seen before, bytes that are not UTF-8), ``item`` being the id or ``line N``;
    blank lines are ignored. Only an unreadable file raises (:class:`OSError`).
    """
    path = Path(path)
    entries: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                problems.append((f"line {lineno}", f"{where}: not UTF-8 text"))
                continue
            if not line:
                continue
            parts = line.split(maxsplit=1)
            key, value = parts[0], parts[1].strip() if len(parts) > 1 else ""
            if not value:
                problems.append((key, f"{where}: id {key!r} has no audio path"))
            elif value.endswith("|"):
                problems.append((key, f"{where}: id {key!r}: piped commands are not supported, give a file path"))
            elif key in seen:
                problems.append((key, f"{where}: id {key!r} already on line {seen[key]}"))
            else:
                seen[key] = lineno
                entries.append((key, value))
    return entries, problems


def write_kv(path: str | os.PathLike, items: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write ``key value`` lines sorted by key (Kaldi's ``LC_ALL=C sort`` order), atomically."""
    pairs = sorted(items.items() if isinstance(items, Mapping) else items)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for k, v in pairs:
            f.write(f"{k} {v}\n")
    os.replace(tmp, path)


def write_data_dir(path: str | os.PathLike, utts: Iterable[Utterance]) -> None:
    """Write ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` (and ``segments`` when any utterance has one)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    utts = sorted(utts, key=lambda u: u.utt_id)
    ids = [u.utt_id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataDirError(f"{path}: duplicate utterance ids {dup[:5]}")
    for u in utts:
        if any(c.isspace() for c in u.utt_id) or any(c.isspace() for c in u.speaker):
            raise DataDirError(f"{path}: utterance/speaker id {u.utt_id!r}/{u.speaker!r} contains white space")
    if any(u.segment is not None for u in utts):
        if not all(u.segment is not None for u in utts):
            raise DataDirError(f"{path}: either all or no utterances must have a segment")
        recs = {u.segment.recording_id: u.audio for u in utts}
        write_kv(path / "wav.scp", recs)
        write_kv(path / "segments", {u.utt_id: f"{u.segment.recording_id} {u.segment.start:.3f} {u.segment.end:.3f}" for u in utts})
    else:
        write_kv(path / "wav.scp", {u.utt_id: u.audio for u in utts})
        (path / "segments").unlink(missing_ok=True)
    if all(u.text is not None for u in utts):
        write_kv(path / "text", {u.utt_id: u.text for u in utts})
    write_kv(path / "utt2spk", {u.utt_id: u.speaker for u in utts})
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker, []).append(u.utt_id)
    write_kv(path / "spk2utt", {s: " ".join(v) for s, v in spk2utt.items()})


def read_data_dir(path: str | os.PathLike, require_text: bool = True) -> list[Utterance]:
    """Read a data directory into utterances (sorted by id).

    Relative audio paths in ``wav.scp`` are kept as written (Kaldi resolves them from the recipe directory).
    Raises :class:`DataDirError` naming the file and utterance on any inconsistency.
    """
    path = Path(path)
    if not (path / "wav.scp").is_file():
        raise DataDirError(f"{path}: no wav.scp (not a data directory)")
    wav = read_kv(path / "wav.scp")
    for k, v in wav.items():
        if v.endswith("|"):
            raise DataDirError(f"{path / 'wav.scp'}: recording {k!r}: piped commands are not supported, give a file path")
    segments: dict[str, Segment] | None = None
    if (path / "segments").is_file():
        segments = {}
        for utt, v in read_kv(path / "segments").items():
            parts = v.split()
            if len(parts) != 3:
                raise DataDirError(f"{path / 'segments'}: utterance {utt!r}: expected '<recording> <start> <end>', got {v!r}")
            try:
                seg = Segment(parts[0], float(parts[1]), float(parts[2]))
            except ValueError:
                raise DataDirError(f"{path / 'segments'}: utterance {utt!r}: start/end are not numbers: {v!r}") from None
            if seg.recording_id not in wav:
                raise DataDirError(f"{path / 'segments'}: utterance {utt!r}: recording {seg.recording_id!r} not in wav.scp")
            if seg.start < 0 or (seg.end != -1 and seg.end <= seg.start):
                raise DataDirError(f"{path / 'segments'}: utterance {utt!r}: bad times {seg.start}..{seg.end}")
            segments[utt] = seg
    utt_ids = list(segments) if segments is not None else list(wav)
    text: dict[str, str] | None = None
    if (path / "text").is_file():
        text = read_kv(path / "text", allow_empty_value=True)
    elif require_text:
        raise DataDirError(f"{path}: no text file")
    utt2spk = read_kv(path / "utt2spk") if (path / "utt2spk").is_file() else {u: u for u in utt_ids}
    utts = []
    for u in utt_ids:
        if text is not None and u not in text:
            raise DataDirError(f"{path / 'text'}: utterance {u!r} has no transcript")
        if u not in utt2spk:
            raise DataDirError(f"{path / 'utt2spk'}: utterance {u!r} has no speaker")
        seg = segments[u] if segments is not None else None
        audio = wav[seg.recording_id] if seg is not None else wav[u]
        utts.append(Utterance(u, audio, text[u] if text is not None else None, utt2spk[u], seg))
    if text is not None:
        extra = sorted(set(text) - set(utt_ids))
        if extra:
            raise DataDirError(f"{path / 'text'}: utterance {extra[0]!r} has no audio ({len(extra)} such)")
    return sorted(utts, key=lambda x: x.utt_id)


def validate_data_dir(path: str | os.PathLike, check_audio: bool = True, require_text: bool = True) -> list[str]:
    """Check a data directory; return a list of problems (empty when it is valid).

    Checks, like Kaldi's ``validate_data_dir.sh``: files sorted with unique ids, the same utterances in
    ``text``/``utt2spk``/``wav.scp`` (or ``segments``), ``spk2utt`` consistent with ``utt2spk``, and (with
    ``check_audio``) that every audio file exists and can be opened, with segment times inside the recording.
    """
    path = Path(path)
    problems: list[str] = []
    for name in ("wav.scp", "text", "utt2spk", "segments", "spk2utt"):
        f = path / name
        if not f.is_file():
            continue
        keys = [ln.split(maxsplit=1)[0] for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if keys != sorted(keys):
            bad = next(b for a, b in zip(keys, keys[1:]) if b < a)
            problems.append(f"{f}: not sorted (id {bad!r} is out of order); sort with LC_ALL=C sort")
    try:
        utts = read_data_dir(path, require_text=require_text)
    except (DataDirError, FileNotFoundError, UnicodeDecodeError) as e:
        return problems + [str(e)]
    if (path / "spk2utt").is_file():
        try:
            spk2utt = read_kv(path / "spk2utt")
        except DataDirError as e:
            problems.append(str(e))
        else:
            expected: dict[str, set[str]] = {}
            for u in utts:
                expected.setdefault(u.speaker, set()).add(u.utt_id)
            got = {s: set(v.split()) for s, v in spk2utt.items()}
            if got != expected:
                # name the first utterance listed differently, so the problem can be found
                pairs = {(s, u) for s, us in got.items() for u in us} ^ {(s, u) for s, us in expected.items() for u in us}
                spk, utt = min(pairs, key=lambda p: (p[1], p[0]))
                problems.append(
                    f"{path / 'spk2utt'}: utterance {utt!r} (speaker {spk!r}) does not match utt2spk "
                    "(regenerate it from utt2spk)"
                )
    if (path / "durations").is_file():  # TTS: frames per input token, one line per utterance
        problems += _duration_problems(path / "durations", {u.utt_id for u in utts})
    if check_audio:
        import soundfile as sf

        info_cache: dict[str, object] = {}
        for u in utts:
            if u.audio not in info_cache:
                try:
                    info_cache[u.audio] = sf.info(u.audio)
                except Exception as e:  # soundfile raises several types for unreadable files
                    info_cache[u.audio] = e
            info = info_cache[u.audio]
            if isinstance(info, Exception):
                problems.append(f"{path / 'wav.scp'}: utterance {u.utt_id!r}: cannot read audio {u.audio!r}: {info}")
                continue
            if u.segment is not None and u.segment.end > info.duration + 0.01:
                problems.append(
                    f"{path / 'segments'}: utterance {u.utt_id!r}: ends at {u.segment.end:.2f}s but {u.audio!r} "
                    f"lasts {info.duration:.2f}s"
                )
    return problems


def _duration_problems(path: Path, utt_ids: set[str]) -> list[str]:
    """``durations`` lines are ``<utt> <n> <n> ...`` (non-negative frame counts), one per utterance of the dir."""
    try:
        durs = read_kv(path)
    except DataDirError as e:
        return [str(e)]
    problems = []
    for k, v in durs.items():
        if k not in utt_ids:
            problems.append(f"{path}: utterance {k!r} is not in the data dir")
        elif not all(t.isdigit() for t in v.split()):
            problems.append(f"{path}: utterance {k!r}: durations must be non-negative integers, got {v[:40]!r}")
    missing = sorted(utt_ids - set(durs))
    if missing:
        problems.append(f"{path}: utterance {missing[0]!r} has no durations ({len(missing)} such)")
    return problems
