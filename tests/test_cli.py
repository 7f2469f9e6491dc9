"""The command line: transcribe (bad files among good ones), decode/score, average, bench, verb dispatch."""

from __future__ import annotations

import json

import pytest

import soundfile as sf

from conftest import TRAIN_TEXTS, tone_speech
from narspeech import cli
from narspeech.bin import average, bench, decode, score, transcribe


def _good_and_bad_files(tmp_path):
    good = []
    for i, text in enumerate(TRAIN_TEXTS[:3]):
        p = tmp_path / f"good{i}.wav"
        sf.write(p, tone_speech(text, seed=i), 16000)
        good.append(p)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    stereo = tmp_path / "stereo.flac"
    import numpy as np

    sf.write(stereo, np.zeros((16000, 2), dtype=np.float32), 16000)
    return good, corrupt, stereo


def test_transcribe_reports_bad_files_and_transcribes_the_rest(trained_tone_model, tmp_path, capsys):
    good, corrupt, stereo = _good_and_bad_files(tmp_path)
    files = [str(good[0]), str(corrupt), str(good[1]), str(stereo), str(good[2]), str(tmp_path / "missing.wav")]
    rc = transcribe.main(["--model", str(trained_tone_model), "--batch-size", "2", *files])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.strip().splitlines()
    assert lines == [f"good{i} {TRAIN_TEXTS[i]}" for i in range(3)]
    assert "corrupt.wav" in err and "stereo.flac" in err and "missing.wav" in err
    assert "3 of 6 inputs failed" in err


def test_transcribe_wav_scp_to_output(trained_tone_model, tmp_path, capsys):
    good, corrupt, _ = _good_and_bad_files(tmp_path)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a {good[0]}\nb {corrupt}\nc {good[2]}\n")
    out = tmp_path / "hyp.txt"
    rc = transcribe.main(["--model", str(trained_tone_model), "--wav-scp", str(scp), "--output", str(out)])
    assert rc == 1
    assert out.read_text().splitlines() == [f"a {TRAIN_TEXTS[0]}", f"c {TRAIN_TEXTS[2]}"]
    assert "ERROR b:" in capsys.readouterr().err


def test_transcribe_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    assert transcribe.main(["--model", str(bad), "x.wav"]) == 2
    assert "model.pt" in capsys.readouterr().err


def test_decode_score_average_and_bench(trained_tone_model, tone_setup, tmp_path, capsys):
    out = tmp_path / "dec"
    assert decode.main(["--model", str(trained_tone_model), "--data", str(tone_setup["train"]), "--out-dir", str(out)]) == 0
    assert "WER 0.00%" in (out / "train" / "score.txt").read_text()
    assert score.main(["--ref", str(tone_setup["train"] / "text"), "--hyp", str(out / "train" / "hyp.text"),
                       "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["wer"] == 0.0

    exp = trained_tone_model.parent
    assert average.main(["--exp-dir", str(exp), "--num", "2", "--by", "last", "--out", str(tmp_path / "avg.pt")]) == 0
    from narspeech.train.checkpoint import load_checkpoint

    assert len(load_checkpoint(tmp_path / "avg.pt")["averaged"]) == 2

    bdir = tmp_path / "bench"
    assert bench.main(["asr", "--model", str(trained_tone_model), "--data", str(tone_setup["train"]), "--out-dir", str(bdir),
                       "--methods", "greedy,beam", "--beam-size", "2", "--batch-size", "4", "--no-gpu"]) == 0
    res = json.loads((bdir / "results.json").read_text())
    assert [r["system"].split()[-1] for r in res["rows"]] == ["greedy", "beam2"]
    for r in res["rows"]:
        assert r["wer"] == 0.0 and r["lat_mean_ms"] > 0 and r["enc_mean_ms"] > 0 and r["threads"] == 1
    assert (bdir / "tradeoff.png").stat().st_size > 1000 and "| system |" in (bdir / "results.md").read_text()


def test_cli_dispatch(capsys):
    assert cli.main(["--help"]) == 0
    assert "transcribe" in capsys.readouterr().out
    assert cli.main(["nonsense"]) == 2
    assert "valid verbs" in capsys.readouterr().err


def test_decoding_method_the_model_lacks_is_refused_up_front(trained_tone_model, tone_setup, tmp_path, capsys):
    """A CTC model has no refinement decoder: a clear error before anything is decoded or written."""
    good, _, _ = _good_and_bad_files(tmp_path)
    assert transcribe.main(["--model", str(trained_tone_model), "--method", "refine", str(good[0])]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "CTCModel cannot decode with --method refine; valid: greedy, beam" in err
    rc = decode.main(["--model", str(trained_tone_model), "--data", str(tone_setup["train"]), "--out-dir",
                      str(tmp_path / "dec"), "--method", "refine"])
    assert rc == 2 and not (tmp_path / "dec").exists()


def test_mask_fraction_tool_counts_the_tokens_below_each_threshold(trained_tone_model, tone_setup, tmp_path):
    """tools/mask_fraction.py: nothing is below 0, everything is below a threshold above 1, and the fractions grow
    with the threshold; the trained tiny model is confident on its training data, so 0.5 masks little. An
    unreadable utterance is reported by name and skipped."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(tone_setup["train"], data)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with open(data / "wav.scp", "a") as f:
        f.write(f"zz_bad {tmp_path / 'bad.wav'}\n")
    with open(data / "utt2spk", "a") as f:
        f.write("zz_bad spk\n")
    with open(data / "text", "a") as f:
        f.write("zz_bad bad cab\n")
    tool = Path(__file__).resolve().parents[1] / "tools" / "mask_fraction.py"
    run = subprocess.run([sys.executable, str(tool), str(trained_tone_model), str(data),
                          "--thresholds", "0", "0.5", "0.999", "1.01"], capture_output=True, text=True, check=True)
    out = run.stdout
    assert "skipped utterance zz_bad" in run.stderr and "(1 skipped)" in out, (out, run.stderr)
    fractions = [float(f) for f in re.findall(r"threshold [\d.]+: ([\d.]+)% masked", out)]
    assert len(fractions) == 4, out
    assert fractions[0] == 0.0 and fractions[-1] == 100.0
    assert fractions == sorted(fractions)
    assert fractions[1] < 20.0, out
    assert re.search(r": (\d+) CTC tokens", out) and int(re.search(r": (\d+) CTC tokens", out).group(1)) > 0


def test_length_accuracy_tool_scores_the_length_head_against_ctc_counts(trained_tone_model, tone_setup, tmp_path):
    """tools/length_accuracy.py on a briefly trained Improved Mask-CTC model: the head's exact runs are CTC's plus
    the runs it fixes minus those it breaks, a length threshold above 1 leaves CTC's counts, the margin rows agree
    with the head's argmax at 0 and grow with the threshold, and a CTC model is refused by name."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from narspeech.config import config_from_dict
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "mask_ctc"
    cfg["model"]["conf"].update(
        decoder={"num_heads": 2, "ffn_dim": 96, "num_layers": 1, "dropout": 0.0},
        acoustic_embedding=True, length_prediction=True, max_span_length=8,
    )
    cfg["train"]["max_epochs"] = 20  # CTC emits most tokens by then (none yet at 10)
    Trainer(config_from_dict(cfg), tmp_path / "lp", resume=False).fit()
    tool = Path(__file__).resolve().parents[1] / "tools" / "length_accuracy.py"
    run = subprocess.run([sys.executable, str(tool), str(tmp_path / "lp" / "last.pt"), str(tone_setup["train"]),
                          "--threshold", "1.01", "--length-threshold", "1.5"], capture_output=True, text=True, check=True)
    out = run.stdout
    runs = int(re.search(r": (\d+) masked runs", out).group(1))
    ctc, head, sure = (int(x) for x in re.findall(r"\((\d+)\)", out)[:3])
    changed, fixed, broken = (int(x) for x in re.search(r"changes (\d+) runs: fixes (\d+), breaks (\d+)", out).groups())
    assert runs > 0 and 0 <= ctc <= runs and sure == ctc, out
    assert head == ctc + fixed - broken and fixed + broken <= changed, out
    # margin < 0 is the head's argmax (the best other count beats CTC's): the same changes, fixes and breaks
    at0 = tuple(int(x) for x in re.search(r"margin < 0: changes (\d+) runs, fixes (\d+), breaks (\d+)", out).groups())
    assert at0 == (changed, fixed, broken), out
    by_tau = [int(x) for x in re.findall(r"margin < \S+: changes (\d+)", out)]
    assert by_tau == sorted(by_tau) and by_tau[-1] <= runs, out  # a higher threshold changes more runs
    auc = re.search(r"margin AUC \(wrong CTC counts below right ones\): ([\d.]+)", out)
    assert auc is None and "margin AUC: undefined" in out or auc is not None and 0.0 <= float(auc.group(1)) <= 1.0, out
    run = subprocess.run([sys.executable, str(tool), str(trained_tone_model), str(tone_setup["train"])],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "not an Improved Mask-CTC model (no length head)" in run.stderr


def test_ctc_frames_tool_counts_the_errors_of_the_best_path(trained_tone_model, tone_setup):
    """tools/ctc_frames.py: its substituted + inserted + missing tokens are the edit distance of CTC greedy to the
    references, the shares are of the right totals, and a model without a CTC head is refused."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import torch
    from rapidfuzz.distance import Levenshtein

    from narspeech.asr.base import ASRDecodeOptions
    from narspeech.asr.transcribe import utterance_features
    from narspeech.data.kaldi import read_data_dir
    from narspeech.asr.task import load_asr_model

    tool = Path(__file__).resolve().parents[1] / "tools" / "ctc_frames.py"
    data = tone_setup["train"]
    out = subprocess.run([sys.executable, str(tool), str(trained_tone_model), str(data)],
                         capture_output=True, text=True, check=True).stdout
    model, tok, _ = load_asr_model(trained_tone_model)
    model.eval()
    distance = frames = empty = 0
    for u in read_data_dir(data):
        f = utterance_features(u).unsqueeze(0)
        hyp = model.infer(f, torch.tensor([f.size(1)]), ASRDecodeOptions("greedy"))[0]
        distance += Levenshtein.distance(hyp, tok.encode(u.text))
        empty += not hyp
        frames += int(model.encoder.subsampling.output_lengths(torch.tensor(f.size(1))))
    counts = {k: int(v) for k, v in re.findall(r"(substituted|inserted|missing) [\d.]+ % \((\d+)\)", out)}
    assert set(counts) == {"substituted", "inserted", "missing"}, out
    assert sum(counts.values()) == distance, out
    assert f"{frames} encoder frames" in out, out
    for share, count in re.findall(r"([\d.]+) % \((\d+)\)", out):
        assert 0.0 <= float(share) <= 100.0 and int(count) >= 0, out
    run = subprocess.run([sys.executable, str(tool), str(trained_tone_model), str(data), "--threshold", "1.01"],
                         capture_output=True, text=True, check=True)
    # nothing is 1.01 sure: only a gap between both edges (an empty hypothesis) is out of Mask-CTC's reach
    assert empty == 0 and "sure (or the utterance's edge): 0.0 % (0)" in run.stdout, run.stdout


def test_decode_options_from_the_command_line():
    """Every decoding option of decode/transcribe reaches ASRDecodeOptions; the defaults are the dataclass's."""
    from narspeech.asr.base import ASRDecodeOptions
    from narspeech.bin.common import decode_options

    args = decode.get_parser().parse_args(["--model", "m.pt", "--data", "d", "--out-dir", "o"])
    assert decode_options(args) == ASRDecodeOptions()
    args = decode.get_parser().parse_args([
        "--model", "m.pt", "--data", "d", "--out-dir", "o", "--method", "refine", "--beam-size", "4",
        "--iterations", "5", "--threshold", "0.5", "--length-threshold", "0.9", "--length-steps", "1",
        "--ctc-weight", "0.1", "--length-bonus", "0.5", "--deletion-threshold", "0.3",
    ])
    assert decode_options(args) == ASRDecodeOptions(
        "refine", beam_size=4, iterations=5, threshold=0.5, length_threshold=0.9, length_steps=1, ctc_weight=0.1,
        length_bonus=0.5, deletion_threshold=0.3,
    )


@pytest.mark.parametrize("deletion", [False, True])
def test_mask_oracle_tool_masks_exactly_the_wrong_ctc_tokens(trained_tone_model, tone_setup, tmp_path, deletion):
    """tools/mask_oracle.py on a Mask-CTC model started from the trained tone CTC model (``train.init_from``), on
    the training data with two references changed so that the best path has known errors: its greedy WER is the
    decoder's, its oracle masks as many tokens as the best path has substituted + inserted ones, threshold 0 leaves
    refine at greedy, and a CTC model is refused. With ``mlm_deletion``: with every token masked, the no-token
    separation counts exactly the best path's inserted tokens, and fewer masks reach higher deletion thresholds."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import torch
    import yaml
    from rapidfuzz.distance import Levenshtein

    from narspeech.asr.base import ASRDecodeOptions
    from narspeech.asr.transcribe import utterance_features
    from narspeech.config import config_from_dict
    from narspeech.data.kaldi import read_data_dir
    from narspeech.metrics import word_error_rate
    from narspeech.asr.task import load_asr_model
    from narspeech.train.trainer import Trainer

    cfg = yaml.safe_load(yaml.safe_dump(tone_setup["config"]))
    cfg["model"]["name"] = "mask_ctc"
    cfg["model"]["conf"].update(decoder={"num_heads": 2, "ffn_dim": 96, "num_layers": 1, "dropout": 0.0},
                                acoustic_embedding=True, ctc_weight=0.5, mlm_hypotheses=deletion, mlm_deletion=deletion)
    cfg["train"].update(max_epochs=2, init_from=str(trained_tone_model))
    Trainer(config_from_dict(cfg), tmp_path / "mc", resume=False).fit()
    model_path = tmp_path / "mc" / "last.pt"
    data = tmp_path / "data"
    shutil.copytree(tone_setup["train"], data)
    lines = (data / "text").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " bag bad cab"  # was "bad cab": a word more
    lines[1] = lines[1].split()[0] + " face head"  # was "fade head": a word substituted
    if deletion:  # a word fewer in a third reference: the best path inserts its tokens
        words = lines[2].split()
        assert len(words) >= 3, lines[2]
        lines[2] = " ".join(words[:1] + words[2:])
    (data / "text").write_text("\n".join(lines) + "\n")

    model, tok, _ = load_asr_model(model_path)
    refs, hyps, wrong, inserted, total = [], [], 0, 0, 0
    for u in read_data_dir(data):
        f = utterance_features(u).unsqueeze(0)
        hyp = model.infer(f, torch.tensor([f.size(1)]), ASRDecodeOptions("greedy"))[0]
        refs.append(u.text)
        hyps.append(tok.decode(hyp))
        wrong += sum(op.tag in ("replace", "delete") for op in Levenshtein.editops(hyp, tok.encode(u.text)))
        inserted += sum(op.tag == "delete" for op in Levenshtein.editops(hyp, tok.encode(u.text)))
        total += len(hyp)
    assert wrong > 0
    tool = Path(__file__).resolve().parents[1] / "tools" / "mask_oracle.py"
    out = subprocess.run([sys.executable, str(tool), str(model_path), str(data), "--threshold", "0", "--iterations", "2"],
                         capture_output=True, text=True, check=True).stdout
    wers = dict(re.findall(r"^  (\S+) +WER ([\d.]+%)", out, re.M))
    masks = dict(re.findall(r"^  (\S+) +WER .*\((\d+) tokens masked\)", out, re.M))
    greedy = word_error_rate(refs, hyps)
    assert wers["greedy"] == f"{100 * greedy.rate:.2f}%" and greedy.errors > 0, out
    assert wers["refine"] == wers["greedy"] and masks["refine"] == "0", out
    assert int(masks["oracle"]) == wrong == int(masks["refine+oracle"]), out
    assert ("no-token AUC" in out) == deletion, out
    if deletion:  # every token masked: the separation sees each inserted token and every other one
        out = subprocess.run([sys.executable, str(tool), str(model_path), str(data), "--threshold", "1.01",
                              "--iterations", "2"], capture_output=True, text=True, check=True).stdout
        counts = re.search(r"no-token AUC .*: (\S+) \((\d+) inserted, (\d+) other masked tokens\)", out)
        assert counts and (int(counts[2]), int(counts[3])) == (inserted, total - inserted), out
        rows = [tuple(map(int, r)) for r in re.findall(r"P\(no token\) >= \S+: inserted (\d+), others (\d+)", out)]
        assert len(rows) == 6 and rows[0][0] <= inserted and rows[0][1] <= total - inserted, out
        assert all(a[0] >= b[0] and a[1] >= b[1] for a, b in zip(rows, rows[1:])), out
    run = subprocess.run([sys.executable, str(tool), str(trained_tone_model), str(data)], capture_output=True, text=True)
    assert run.returncode != 0 and "not a Mask-CTC model (ctc)" in run.stderr
