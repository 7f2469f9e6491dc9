"""LibriSpeech recipe: a tiny corpus in the real layout (flac + trans.txt) built in tmp_path, prepared through the CLI;
error reports; the download logic with file:// and loopback-HTTP URLs (no network); run.sh stages on the fixture."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from narspeech.bin import prepare
from narspeech.data.kaldi import read_data_dir, read_kv, validate_data_dir
from narspeech.recipes import librispeech
from narspeech.recipes.fsdd import DownloadError
from narspeech.recipes.librispeech import COMPLETE_MARKER, combine_data_dirs, download_subset, fetch, prepare_subset
from narspeech.text.tokenizer import load_tokenizer

RATE = 16000
# subset -> speaker -> chapter -> transcripts (upper case with apostrophes, as in the corpus)
SENTENCES = [
    "CHAPTER ONE THE HOUSE ON THE HILL",
    "SHE HAD NOT SEEN HIM SINCE THE WINTER",
    "IT WAS A LONG WAY TO THE RIVER",
    "HE SAID THAT HE WOULD COME BACK IN THE MORNING",
    "THE OLD MAN'S DOG SLEPT BY THE FIRE",
    "WE WALKED TOGETHER UNTIL THE ROAD TURNED",
    "THERE WAS NOTHING MORE TO BE DONE THAT NIGHT",
    "I DON'T KNOW WHY THEY LEFT SO EARLY",
    "THE LIGHT FELL ACROSS THE TABLE",
    "NOBODY ANSWERED WHEN SHE KNOCKED",
    "THEY FOUND THE LETTER UNDER THE DOOR",
    "A COLD WIND CAME DOWN FROM THE NORTH",
]
LAYOUT = {
    "train-clean-100": {"103": ["1240", "1241"], "1034": ["121119", "121120"]},
    "dev-clean": {"1272": ["128104"], "174": ["50561"]},
}
UTTS_PER_CHAPTER = 3


def _tone(num: int, freq: float) -> np.ndarray:
    t = np.arange(num) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_fake_librispeech(root: Path, layout: dict = LAYOUT) -> dict[str, dict[str, tuple[str, str, int]]]:
    """Write ``root/LibriSpeech/<subset>/<spk>/<ch>/`` flac files + trans.txt.

    Returns ``{subset: {utt_id: (TEXT, speaker, frames)}}``."""
    expected: dict[str, dict[str, tuple[str, str, int]]] = {}
    k = 0
    for subset, speakers in layout.items():
        expected[subset] = {}
        for spk, chapters in speakers.items():
            for ch in chapters:
                folder = root / "LibriSpeech" / subset / spk / ch
                folder.mkdir(parents=True)
                lines = []
                for i in range(UTTS_PER_CHAPTER):
                    utt = f"{spk}-{ch}-{i:04d}"
                    text = SENTENCES[k % len(SENTENCES)]
                    frames = 3200 + 480 * (k % 7)  # 0.2-0.38 s, varied so utt2dur reveals mix-ups
                    sf.write(str(folder / f"{utt}.flac"), _tone(frames, 200 + 30 * k), RATE, format="FLAC",
                             subtype="PCM_16")
                    lines.append(f"{utt} {text}")
                    expected[subset][utt] = (text, spk, frames)
                    k += 1
                (folder / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    (root / "LibriSpeech" / "README.TXT").write_text("LibriSpeech fixture\n")
    return expected


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "corpus"
    return root, make_fake_librispeech(root)


def _check_set(set_dir: Path, expected: dict[str, tuple[str, str, int]], lowercase: bool = True) -> None:
    assert validate_data_dir(set_dir) == []
    utts = read_data_dir(set_dir)
    assert [u.utt_id for u in utts] == sorted(expected)
    ids_in_file = [ln.split()[0] for ln in (set_dir / "wav.scp").read_text().splitlines()]
    assert ids_in_file == sorted(ids_in_file)
    durs = read_kv(set_dir / "utt2dur")
    for u in utts:
        text, spk, frames = expected[u.utt_id]
        assert u.text == (text.lower() if lowercase else text)
        assert u.speaker == spk and u.utt_id.startswith(f"{spk}-")
        audio = Path(u.audio)
        assert audio.is_absolute() and audio.is_file() and audio.name == f"{u.utt_id}.flac"
        assert audio.parent.name == u.utt_id.split("-")[1] and audio.parent.parent.name == spk
        assert float(durs[u.utt_id]) == pytest.approx(frames / RATE, abs=1e-4)
    spk2utt = {s: v.split() for s, v in read_kv(set_dir / "spk2utt").items()}
    speakers = {e[1] for e in expected.values()}
    assert spk2utt == {s: sorted(u for u, e in expected.items() if e[1] == s) for s in speakers}


def test_cli_prepares_every_subset_present(corpus: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    root, expected = corpus
    data = tmp_path / "data"
    assert prepare.main(["librispeech", "--librispeech-dir", str(root), "--data-dir", str(data)]) == 0
    assert sorted(p.name for p in data.iterdir()) == ["dev_clean", "train_clean_100"]
    _check_set(data / "train_clean_100", expected["train-clean-100"])
    _check_set(data / "dev_clean", expected["dev-clean"])
    out = capsys.readouterr().out
    assert f"{data / 'train_clean_100'}: 12 utterances" in out and "skipped" not in out


def test_keep_case_and_corpus_folder_as_root(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = corpus
    data = tmp_path / "data"
    # --librispeech-dir may also be the LibriSpeech folder itself
    args = ["librispeech", "--librispeech-dir", str(root / "LibriSpeech"), "--data-dir", str(data),
            "--subsets", "dev-clean", "--keep-case"]
    assert prepare.main(args) == 0
    assert sorted(p.name for p in data.iterdir()) == ["dev_clean"]
    _check_set(data / "dev_clean", expected["dev-clean"], lowercase=False)


def test_parallel_scan_gives_the_same_dirs(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = corpus
    for nj in (1, 2):  # 4 chapters >= 2 * nj: the process pool is used
        prepare_subset(root, "train-clean-100", tmp_path / f"nj{nj}", nj=nj)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur"):
        one, two = (tmp_path / f"nj{nj}/train_clean_100" / name for nj in (1, 2))
        assert one.read_text() == two.read_text()


def test_problems_name_the_file_and_the_rest_is_prepared(
    corpus: tuple[Path, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, expected = corpus
    chapter = root / "LibriSpeech/train-clean-100/103/1240"
    trans = chapter / "103-1240.trans.txt"
    (chapter / "103-1240-0001.flac").unlink()  # missing audio
    (chapter / "103-1240-0002.flac").write_bytes(b"fLaC but not really")  # unreadable audio
    with open(trans, "a") as f:
        f.write("103-1240-0000 A SECOND LINE WITH THE SAME ID\n")  # line 4: duplicate id
        f.write("103-1240-0007\n")  # line 5: no text
        f.write("this is not a transcript line\n")  # line 6: malformed
        f.write("999-1240-0003 WRONG SPEAKER\n")  # line 7: belongs elsewhere
    sf.write(str(chapter / "103-1240-0009.flac"), _tone(1600, 300), RATE, format="FLAC")  # no transcript line
    other = root / "LibriSpeech/train-clean-100/1034/121120"
    (other / "1034-121120.trans.txt").rename(other / "notes.txt")  # a chapter without its transcript
    caplog.set_level(logging.WARNING)
    data = tmp_path / "data"
    assert prepare.main(["librispeech", "--librispeech-dir", str(root), "--data-dir", str(data)]) == 0
    log = caplog.text
    assert f"{trans}:2: utterance 103-1240-0001: {chapter / '103-1240-0001.flac'} missing" in log
    assert f"{trans}:3: utterance 103-1240-0002: {chapter / '103-1240-0002.flac'} cannot read audio" in log
    assert f"{trans}:4: duplicate utterance id 103-1240-0000 (first on line 1)" in log
    assert f"{trans}:5: malformed line" in log and f"{trans}:6: malformed line" in log
    assert f"{trans}:7: utterance 999-1240-0003 does not belong to 103/1240" in log
    assert f"{trans}: no transcript line for 1 flac file(s), e.g. 103-1240-0009.flac" in log
    assert f"{other / '1034-121120.trans.txt'}: transcript file missing" in log
    no_transcript = {u for u in expected["train-clean-100"] if u.startswith("1034-121120-")}
    left_out = {"103-1240-0001", "103-1240-0002"} | no_transcript
    kept = {u: v for u, v in expected["train-clean-100"].items() if u not in left_out}
    _check_set(data / "train_clean_100", kept)  # the first line of 103-1240 keeps its original text
    _check_set(data / "dev_clean", expected["dev-clean"])
    result = prepare_subset(root, "train-clean-100", tmp_path / "lib")
    assert result.num_utts == len(kept) and len(result.skipped) == 8
    assert all(str(root) in msg for msg in result.skipped)


def test_absent_subset_fails_but_the_others_are_written(corpus: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    root, expected = corpus
    data = tmp_path / "data"
    args = ["librispeech", "--librispeech-dir", str(root), "--data-dir", str(data),
            "--subsets", "dev-other", "dev-clean"]
    assert prepare.main(args) == 1
    assert str(root / "LibriSpeech" / "dev-other") in capsys.readouterr().err
    _check_set(data / "dev_clean", expected["dev-clean"])
    assert not (data / "dev_other").exists()
    assert prepare.main(["librispeech", "--librispeech-dir", str(tmp_path / "empty"), "--data-dir", str(data)]) == 1
    assert "no LibriSpeech subset under" in capsys.readouterr().err


def test_combined_train_960(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout = {
        "train-clean-100": {"103": ["1240"]},
        "train-clean-360": {"100": ["121669"]},
        "train-other-500": {"1006": ["135212"], "1012": ["133424"]},
    }
    root = tmp_path / "corpus"
    expected = make_fake_librispeech(root, layout)
    data = tmp_path / "data"
    assert prepare.main(["librispeech", "--librispeech-dir", str(root), "--data-dir", str(data),
                         "--combine", "train_960"]) == 0
    merged = {u: v for part in expected.values() for u, v in part.items()}
    _check_set(data / "train_960", merged)
    for subset, utts in expected.items():
        _check_set(data / librispeech.kaldi_name(subset), utts)
    # an id met twice is reported naming its source and kept once
    caplog.set_level(logging.WARNING)
    res = combine_data_dirs(tmp_path / "twice", [data / "train_clean_100", data / "train_960"])
    _check_set(tmp_path / "twice", merged)
    assert len(res.skipped) == len(expected["train-clean-100"])
    dup = f"{data / 'train_960'}: duplicate utterance id 103-1240-0000 (already in {data / 'train_clean_100'})"
    assert dup in caplog.text
    with pytest.raises(ValueError, match="expected NAME=SUBSET"):
        librispeech.parse_combine(["nonsense"])
    assert librispeech.parse_combine(["mine=dev-clean,dev-other"]) == {"mine": ["dev-clean", "dev-other"]}


# ----------------------------------------------------------------------------------------------------------------------
# Download (file:// and a loopback HTTP server; never the network)


def _archive(tmp_path: Path, subset: str = "dev-clean", extra: dict[str, bytes] | None = None) -> tuple[Path, int, str]:
    """``<tmp>/mirror/<subset>.tar.gz`` holding a fixture subset (as the official archives: LibriSpeech/...)."""
    src = tmp_path / "src"
    make_fake_librispeech(src, {subset: LAYOUT["dev-clean"]})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    path = mirror / f"{subset}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src / "LibriSpeech", arcname="LibriSpeech")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = path.read_bytes()
    return path, len(data), hashlib.md5(data).hexdigest()


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("no download expected")


def test_download_from_file_url_then_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, size, md5 = _archive(tmp_path)
    root = tmp_path / "dl"
    # the CLI uses the official sizes/md5: give the fixture's instead
    monkeypatch.setitem(librispeech.ARCHIVES, "dev-clean", (size, md5))
    args = ["librispeech", "--librispeech-dir", str(root), "--data-dir", str(tmp_path / "data"),
            "--subsets", "dev-clean", "--download", "--mirror", archive.parent.as_uri()]
    assert prepare.main(args) == 0
    target = root / "LibriSpeech" / "dev-clean"
    assert (target / COMPLETE_MARKER).is_file() and (root / "LibriSpeech" / "README.TXT").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["LibriSpeech"]  # archive, .part and temp folder removed
    assert validate_data_dir(tmp_path / "data" / "dev_clean") == []
    assert len(read_data_dir(tmp_path / "data" / "dev_clean")) == 6
    # a second run finds the marker and never downloads
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert download_subset("dev-clean", root, archive.parent.as_uri()) == target
    again = ["librispeech", "--librispeech-dir", str(root), "--subsets", "dev-clean", "--download-only"]
    assert prepare.main(again) == 0


def test_download_rejects_a_bad_checksum(tmp_path: Path) -> None:
    archive, size, md5 = _archive(tmp_path)
    root = tmp_path / "dl"
    with pytest.raises(DownloadError, match="md5 .* does not match"):
        download_subset("dev-clean", root, archive.parent.as_uri(), {"dev-clean": (size, "0" * 32)})
    with pytest.raises(DownloadError, match=f"got {size} bytes, expected {size + 1}"):
        download_subset("dev-clean", root, archive.parent.as_uri(), {"dev-clean": (size + 1, md5)})
    assert not (root / "LibriSpeech").exists() and list(root.glob("*.part")) == []
    with pytest.raises(DownloadError, match="could not download"):
        download_subset("dev-other", root, archive.parent.as_uri(), {})  # no such file on the mirror


def test_an_existing_archive_is_checked_before_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, size, md5 = _archive(tmp_path)
    sums = {"dev-clean": (size, md5)}
    root = tmp_path / "dl"
    root.mkdir()
    (root / "dev-clean.tar.gz").write_bytes(b"\0" * size)  # right size, wrong content: fetched again
    download_subset("dev-clean", root, archive.parent.as_uri(), sums, keep_archive=True)
    assert (root / "dev-clean.tar.gz").read_bytes() == archive.read_bytes()
    # a verified archive is unpacked without any download
    (root / "LibriSpeech").rename(tmp_path / "first")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    target = download_subset("dev-clean", root, archive.parent.as_uri(), sums)
    assert (target / COMPLETE_MARKER).is_file() and not (root / "dev-clean.tar.gz").exists()
    assert sorted(p.relative_to(target) for p in target.rglob("*.flac")) == \
        sorted(p.relative_to(tmp_path / "first/dev-clean") for p in (tmp_path / "first/dev-clean").rglob("*.flac"))


def test_download_refuses_unsafe_archives(tmp_path: Path) -> None:
    for name in ("LibriSpeech/../../evil.txt", "elsewhere/file.txt"):
        case = tmp_path / name.split("/")[1]
        archive, size, md5 = _archive(case, extra={name: b"boom"})
        with pytest.raises(DownloadError, match="cannot unpack"):
            download_subset("dev-clean", case / "dl", archive.parent.as_uri(), {"dev-clean": (size, md5)})
        assert not (case / "dl" / "LibriSpeech").exists() and not (tmp_path / "evil.txt").exists()
        assert [p.name for p in (case / "dl").iterdir()] == ["dev-clean.tar.gz"]  # kept: the archive itself is fine


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with single ``bytes=N-`` Range requests honoured (206), recording each Range header."""

    ranges: list[str | None] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def http_mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()

    def handler(*args: object, **kwargs: object) -> _RangeHandler:
        return _RangeHandler(*args, directory=str(root), **kwargs)

    _RangeHandler.ranges = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_fetch_resumes_a_partial_file(tmp_path: Path, http_mirror: tuple[str, Path]) -> None:
    url, served = http_mirror
    payload = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    (served / "blob.bin").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(payload[:1_234_567])  # an interrupted earlier attempt
    assert fetch(f"{url}/blob.bin", dest, len(payload), md5).read_bytes() == payload
    assert _RangeHandler.ranges == ["bytes=1234567-"]
    assert not dest.with_name("blob.bin.part").exists()
    # a .part that is not a prefix of the file is caught by the md5 check and removed
    dest.unlink()
    dest.with_name("blob.bin.part").write_bytes(b"x" * 1000)
    with pytest.raises(DownloadError, match="md5"):
        fetch(f"{url}/blob.bin", dest, len(payload), md5)
    assert not dest.with_name("blob.bin.part").exists() and not dest.exists()
    # file:// ignores Range: the stale partial file is restarted from zero
    dest.with_name("blob.bin.part").write_bytes(b"y" * 1000)
    assert fetch((served / "blob.bin").as_uri(), dest, len(payload), md5).read_bytes() == payload


def test_fetch_reports_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError, match="could not download https://www.openslr.org/resources/12/dev-clean.tar.gz"):
        download_subset("dev-clean", tmp_path / "dl")
    assert not (tmp_path / "dl" / "LibriSpeech").exists()


# ----------------------------------------------------------------------------------------------------------------------
# run.sh on the fixture


@pytest.mark.slow
def test_recipe_stages_on_fixture(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    from test_recipes import TINY_MODEL, check_decode, check_model, copy_recipe, run_recipe

    root, expected = corpus
    recipe = copy_recipe(tmp_path, "librispeech")
    sets = ["--librispeech_dir", str(root), "--valid_sets", "dev_clean", "--test_sets", "dev_clean"]
    proc = run_recipe(recipe, *sets, "--stop_stage", "4", "--nbpe", "40", "--nj", "1")
    assert "all subsets present" in proc.stderr and not (recipe / "downloads").exists()
    data = recipe / "data"
    _check_set(data / "train_clean_100", expected["train-clean-100"])
    _check_set(data / "dev_clean", expected["dev-clean"])
    tok = load_tokenizer(data / "token_train_clean_100_bpe40")
    assert tok.kind == "bpe" and 4 < tok.vocab_size <= 40 + 4
    # lower-cased training text: the pieces are lower case too, and a training sentence round-trips
    assert tok.decode(tok.encode(SENTENCES[0].lower())) == SENTENCES[0].lower()
    assert (data / "cmvn_train_clean_100.json").is_file()

    # stages 5-7 with a tiny model (wiring only: overrides, paths, decode and bench outputs)
    tiny = (f"{TINY_MODEL} model.conf.encoder.subsampling_channels=16 optim.accum_grad=1 optim.warmup_steps=10 "
            "data.max_frames=4000 data.speed_perturb=[1.0] train.average_best=1 train.save_interval_steps=0")
    run_recipe(recipe, *sets, "--stage", "5", "--nbpe", "40", "--train_args", tiny, "--bench_set", "dev_clean",
               "--bench_max_utts", "2", "--bench_methods", "greedy")
    exp = recipe / "exp/ctc_train_clean_100"
    check_model(exp / "model.pt", "bpe")
    check_decode(exp / "decode/dev_clean", data / "dev_clean")
    res = json.loads((exp / "bench/results.json").read_text())
    assert res["meta"]["num_utts"] == 2
