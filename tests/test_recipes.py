"""End-to-end mini runs of the recipes (egs/<corpus>/asr1/run.sh) and of tools/parse_options.sh.

Each recipe directory (run.sh + conf/) is copied into tmp_path at the same depth as in the repository
(``<tmp>/repo/egs/<corpus>/asr1``), next to a symlink ``<tmp>/repo/tools`` to the real tools, so that
``../../../tools/*.sh`` resolve exactly as in a checkout and nothing is written into the real egs/ folders.
``tools/path.sh`` puts ``<repo root>/.venv/bin`` on PATH; the copy's repo root gets a ``.venv`` symlink to the real
one when the checkout has it, and the directory of the running Python is put first on PATH as well, so the
``narspeech`` of the interpreter running these tests is found either way.

Corpora are fakes (tones named like FSDD takes / yes-no files, espeak-ng for mini) and models tiny (1 block, d=32,
1 epoch): these check that every stage runs and writes what the next stage and the user need, not accuracy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from narspeech.data.kaldi import read_kv, validate_data_dir
from test_prepare_an4 import make_fake_an4
from test_prepare_fsdd_yesno import make_fake_fsdd, make_fake_yesno

REPO = Path(__file__).resolve().parents[1]
RECIPE_TIMEOUT_S = 900  # generous: a mini run takes well under a minute on 2 idle cores

TINY_MODEL = (
    "train.max_epochs=1 train.max_minutes=0 model.conf.encoder.num_layers=1 model.conf.encoder.d_model=32 "
    "model.conf.encoder.num_heads=2 model.conf.encoder.ffn_dim=64 data.num_workers=0"
)


def copy_recipe(tmp_path: Path, corpus: str, task: str = "asr1") -> Path:
    """``<tmp>/repo/egs/<corpus>/<task>`` with copies of run.sh and conf/; ``<tmp>/repo/{tools,.venv}`` are
    symlinks."""
    root = tmp_path / "repo"
    root.mkdir(exist_ok=True)
    if not (root / "tools").exists():
        (root / "tools").symlink_to(REPO / "tools", target_is_directory=True)
    if (REPO / ".venv").is_dir() and not (root / ".venv").exists():
        (root / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    src, dst = REPO / "egs" / corpus / task, root / "egs" / corpus / task
    dst.mkdir(parents=True)
    shutil.copy2(src / "run.sh", dst / "run.sh")  # keeps the executable bit
    shutil.copytree(src / "conf", dst / "conf")
    return dst


def recipe_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if shutil.which("narspeech", path=env["PATH"]) is None and not (REPO / ".venv/bin/narspeech").exists():
        pytest.skip("the narspeech command is not installed (tools/install.sh)")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # the recipes must use the corpora given on the command line, never shared data or a download
    env["NARSPEECH_SHARED_DATA"] = str(tmp_path / "no_shared_data")
    return env


def run_recipe(recipe: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``<recipe>/run.sh ARGS`` from another directory (run.sh must cd to its own folder)."""
    proc = subprocess.run(
        [str(recipe / "run.sh"), *args], cwd=recipe.parents[3], env=recipe_env(recipe.parents[3]),
        capture_output=True, text=True, timeout=RECIPE_TIMEOUT_S,
    )
    if check:
        assert proc.returncode == 0, (
            f"run.sh {' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
            f"--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def n_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def check_model(path: Path, tokenizer_kind: str) -> None:
    """model.pt loads, carries the tiny-model overrides and the recipe's tokenizer."""
    from narspeech.asr.task import load_asr_model

    assert path.is_file(), f"{path} missing"
    model, tok, cfg = load_asr_model(path)
    enc = cfg.model.conf.encoder
    assert (enc.num_layers, enc.d_model, enc.num_heads, enc.ffn_dim) == (1, 32, 2, 64)
    assert cfg.train.max_epochs == 1
    assert tok.kind == tokenizer_kind
    assert sum(p.numel() for p in model.parameters()) > 0


def check_decode(decode_dir: Path, data_dir: Path) -> None:
    """hyp.text has one line per utterance of data_dir and score.txt a WER/CER line for the set."""
    refs = read_kv(data_dir / "text", allow_empty_value=True)
    hyp = decode_dir / "hyp.text"
    assert hyp.is_file(), f"{hyp} missing"
    lines = hyp.read_text().splitlines()
    assert len(lines) == len(refs) and sorted(line.split(" ", 1)[0] for line in lines) == sorted(refs)
    score = (decode_dir / "score.txt").read_text()
    assert re.search(rf"^{re.escape(data_dir.name)}: WER .*\d.* CER .*\d.*\({len(refs)} utts, 0 skipped\)", score, re.M), score


# ----------------------------------------------------------------------------------------------------------------------
# tools/parse_options.sh (through a real run.sh; these stop before any stage runs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no_such_option", "1"], "unknown option --no_such_option"),
        (["--no-such-option=1"], "unknown option --no_such_option"),
        (["--stage"], "option --stage needs a value"),
        (["3"], "unexpected argument '3'"),
    ],
)
def test_parse_options_rejects(tmp_path: Path, args: list[str], message: str) -> None:
    recipe = copy_recipe(tmp_path, "mini")
    proc = run_recipe(recipe, *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()  # failed before stage 0


def test_parse_options_forms(tmp_path: Path) -> None:
    recipe = copy_recipe(tmp_path, "mini")
    # --name=value, dashes for underscores, and a value with spaces: all stages skipped, so nothing is written
    proc = run_recipe(recipe, "--stage=99", "--stop-stage", "99", "--exp=exp/x y", "--train_args", "a=1 b=2")
    assert "done. model: exp/x y/model.pt" in proc.stderr
    assert not (recipe / "data").exists()
    help_ = run_recipe(recipe, "--help", check=False)
    assert help_.returncode == 0 and "usage:" in help_.stdout


# ----------------------------------------------------------------------------------------------------------------------
# Mini runs of every recipe


@pytest.mark.slow
def test_mini_recipe(tmp_path: Path) -> None:
    from narspeech.recipes import espeak

    ok, why = espeak.is_available()
    if not ok:
        pytest.skip(f"espeak-ng cannot be loaded here, the mini recipe cannot generate its corpus: {why}")
    recipe = copy_recipe(tmp_path, "mini")
    run_recipe(recipe, "--stop_stage", "4", "--num_train", "24", "--num_dev", "6", "--num_test", "6", "--nj", "1",
               "--train_args", TINY_MODEL)
    data = recipe / "data"
    assert {s: n_lines(data / s / "text") for s in ("train", "dev", "test")} == {"train": 24, "dev": 6, "test": 6}
    for s in ("train", "dev", "test"):
        assert validate_data_dir(data / s) == []
    assert (data / "token_bpe200").is_dir() and (data / "token_char").is_dir() and (data / "cmvn.json").is_file()
    exp = recipe / "exp/ctc"
    check_model(exp / "model.pt", "bpe")
    assert n_lines(exp / "decode/test/hyp.text") == 6
    check_decode(exp / "decode/test", data / "test")

    # stage 5 alone (--name=value form): the CLI transcribes the first 3 test files, one "<stem> <text>" line each
    proc = run_recipe(recipe, "--stage=5")
    first3 = [Path(p).stem for p in list(read_kv(data / "test/wav.scp").values())[:3]]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert [line.split(" ", 1)[0] for line in lines] == first3
    assert "references:" in proc.stderr
    assert not (exp / "bench").exists()  # stage 6 only with --bench true


@pytest.mark.slow
def test_fsdd_recipe(tmp_path: Path) -> None:
    fsdd_dir = make_fake_fsdd(tmp_path / "fsdd")
    other_dir = make_fake_fsdd(tmp_path / "fsdd_other", takes=range(3))
    recipe = copy_recipe(tmp_path, "fsdd")
    run_recipe(recipe, "--fsdd_dir", str(fsdd_dir), "--num_train", "16", "--num_dev", "4", "--num_test", "4",
               "--extra_sets", f"other={other_dir}", "--stop_stage", "4", "--train_args", TINY_MODEL)
    data = recipe / "data"
    sizes = {s: n_lines(data / s / "text") for s in ("train", "dev", "test")}
    assert sizes == {"train": 16, "dev": 4, "test": 4}
    # the extra set uses every take of its folder once: 2 speakers x 3 digits x takes 0-2
    assert validate_data_dir(data / "other") == []
    takes = [t for v in read_kv(data / "other/utt2takes").values() for t in v.split()]
    assert len(takes) == len(set(takes)) == 18
    assert not (recipe / "downloads").exists()
    assert (data / "token_bpe").is_dir() and (data / "cmvn.json").is_file()
    exp = recipe / "exp/conformer_ctc"
    check_model(exp / "model.pt", "bpe")
    check_decode(exp / "decode/test", data / "test")
    check_decode(exp / "decode/other", data / "other")
    assert not (exp / "bench").exists()  # --stop_stage 4

    run_recipe(recipe, "--stage", "5", "--bench_threads", "1")
    res = json.loads((exp / "bench/results.json").read_text())
    assert res["meta"]["threads"] == 1 and res["meta"]["num_utts"] == 4
    cpu_rows = [r for r in res["rows"] if r["device"] == "cpu"]
    assert [r["system"] for r in cpu_rows] == ["conformer_ctc greedy", "conformer_ctc beam10"]
    assert all(r["threads"] == 1 and r["num_utts"] == 4 and r["lat_mean_ms"] > 0 for r in cpu_rows)
    assert (exp / "bench/results.md").is_file() and (exp / "bench/tradeoff.png").is_file()


@pytest.mark.slow
def test_yesno_recipe(tmp_path: Path) -> None:
    yesno_dir, names = make_fake_yesno(tmp_path / "yesno")
    recipe = copy_recipe(tmp_path, "yesno")
    run_recipe(recipe, "--yesno_dir", str(yesno_dir), "--train_args", TINY_MODEL)
    data = recipe / "data"
    # 12 files: Kaldi's first half (6) is train + dev (5 + 1), the second half test
    assert {s: n_lines(data / s / "text") for s in ("train", "dev", "test")} == {"train": 5, "dev": 1, "test": 6}
    assert sorted(read_kv(data / "test/text")) == [n[:-4] for n in names[6:]]
    assert not (recipe / "downloads").exists()
    exp = recipe / "exp/ctc"
    check_model(exp / "model.pt", "bpe")
    check_decode(exp / "decode/test", data / "test")


@pytest.mark.slow
def test_an4_recipe(tmp_path: Path) -> None:
    """Every stage on an AN4-shaped stand-in (.sph audio, as the CMU archive has it); dev = one whole speaker."""
    an4_dir = make_fake_an4(tmp_path / "an4", suffix=".sph")
    recipe = copy_recipe(tmp_path, "an4")
    run_recipe(recipe, "--an4_dir", str(an4_dir), "--num_dev", "3", "--nbpe", "16", "--train_args", TINY_MODEL)
    data = recipe / "data"
    assert {s: n_lines(data / s / "text") for s in ("train", "dev", "test")} == {"train": 9, "dev": 3, "test": 6}
    assert not {read_kv(data / "dev/utt2spk")[u] for u in read_kv(data / "dev/utt2spk")} & set(
        read_kv(data / "train/utt2spk").values())
    assert len(list((data / "wav").glob("*/*.wav"))) == 18 and not (recipe / "downloads").exists()
    exp = recipe / "exp/ctc"
    check_model(exp / "model.pt", "bpe")
    check_decode(exp / "decode/test", data / "test")
    check_decode(exp / "decode/dev", data / "dev")
    res = json.loads((exp / "bench/results.json").read_text())
    assert [r["system"] for r in res["rows"] if r["device"] == "cpu"] == ["ctc greedy", "ctc beam10"]
