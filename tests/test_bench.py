"""The evaluation protocol's parsing and bookkeeping (the timed runs themselves are in test_cli and the recipes)."""

from __future__ import annotations

import pytest

from narspeech.asr.base import ASRDecodeOptions
from narspeech.bench import core
from narspeech.bench.asr import (
    BenchRow,
    add_ar_speedups,
    default_modes,
    markdown_table,
    parse_mode,
    plot,
    split_model_spec,
)


def _row(system: str, model: str, lat: float, device: str = "cpu", thr: float = 10.0) -> BenchRow:
    return BenchRow(system, device, 1, 10.0, 5.0, 1.0, lat, lat, lat, 0.01, 5.0, thr, 32, 100, model=model)


def test_parse_mode_sets_method_and_width():
    base = ASRDecodeOptions(threshold=0.9, beam_size=7, iterations=3)
    assert parse_mode("greedy", base) == ASRDecodeOptions(method="greedy", threshold=0.9, beam_size=7, iterations=3)
    assert parse_mode("beam10", base).beam_size == 10 and parse_mode("beam10", base).method == "beam"
    assert parse_mode("beam", base).beam_size == 7
    r = parse_mode("refine5", base)
    assert (r.method, r.iterations, r.threshold) == ("refine", 5, 0.9)
    r = parse_mode("refine10@0.5", base)  # a threshold of its own for this mode
    assert (r.method, r.iterations, r.threshold) == ("refine", 10, 0.5)
    assert parse_mode("refine@.99", base).threshold == 0.99 and parse_mode("refine@.99", base).iterations == 3
    r = parse_mode("refine10@0.999+lp0.9", base)  # Improved Mask-CTC: length changes only at >= 0.9
    assert (r.iterations, r.threshold, r.length_threshold) == (10, 0.999, 0.9)
    assert parse_mode("refine+lp1.5", base).length_threshold == 1.5 and parse_mode("refine5", base).length_threshold == 0.0
    r = parse_mode("refine10@0.999+lp0+ls1", base)  # lengths predicted in the first iteration only
    assert (r.iterations, r.threshold, r.length_threshold, r.length_steps) == (10, 0.999, 0.0, 1)
    assert parse_mode("refine10+ls2", base).length_steps == 2 and parse_mode("refine10", base).length_steps == 0
    r = parse_mode("refine10@0.99+dt0.2", base)  # mlm_deletion: a mask is deleted at P(no token) >= 0.2
    assert (r.iterations, r.threshold, r.deletion_threshold) == (10, 0.99, 0.2)
    assert parse_mode("refine+lp0.9+ls1+dt2", base).deletion_threshold == 2.0 and r.length_steps == 0
    assert parse_mode("refine10", base).deletion_threshold == 0.0
    for bad in ("greedy3", "beamx", "mask", "", "beam10@0.5", "greedy@0.5", "refine10@1.5", "refine10@",
                "beam10+lp0.9", "refine10+lp-1", "refine10+lp", "refine10+lp0.9@0.5", "beam10+ls1", "refine10+ls",
                "refine10+ls1+lp0.9", "refine10+ls0.5", "beam10+dt0.2", "refine10+dt", "refine10+dt0.2+ls1"):
        with pytest.raises(ValueError, match="bad decoding mode"):
            parse_mode(bad, base)


def test_default_modes_per_family():
    from narspeech.config import config_from_dict

    def modes(name, **conf):
        return default_modes(config_from_dict({"model": {"name": name, "conf": conf}}))

    assert modes("ctc") == ["greedy", "beam10"] and modes("ar") == ["beam1", "beam10"]
    assert modes("mask_ctc") == ["greedy", "refine1", "refine5", "refine10"]
    # Improved Mask-CTC: also with lengths predicted in the first iteration only
    assert modes("mask_ctc", length_prediction=True) == ["greedy", "refine1", "refine5", "refine10", "refine10+ls1"]


def test_split_model_spec():
    assert split_model_spec("exp/ar/model.pt:beam1,beam10") == ("exp/ar/model.pt", ["beam1", "beam10"])
    assert split_model_spec("exp/m/model.pt:refine10@0.9,greedy") == ("exp/m/model.pt", ["refine10@0.9", "greedy"])
    assert split_model_spec("exp/m/model.pt:refine10@0.999+lp0.9") == ("exp/m/model.pt", ["refine10@0.999+lp0.9"])
    assert split_model_spec("exp/ar/model.pt") == ("exp/ar/model.pt", None)
    assert split_model_spec("C:/x/model.pt") == ("C:/x/model.pt", None)


def test_speedup_is_relative_to_the_widest_ar_beam_on_the_same_device():
    rows = [_row("ctc greedy", "ctc", 10.0), _row("ar beam1", "ar", 100.0), _row("ar beam10", "ar", 400.0),
            _row("ctc greedy", "ctc", 2.0, "cuda"), _row("ar beam10", "ar", 50.0, "cuda")]
    out = add_ar_speedups(rows)
    assert [r.speedup_vs_ar for r in out] == [40.0, 4.0, 1.0, 25.0, 1.0]
    assert add_ar_speedups(rows, ar_ref="ar beam1")[0].speedup_vs_ar == 10.0
    assert add_ar_speedups(rows[:1])[0].speedup_vs_ar is None  # no AR row: no column value
    table = markdown_table(out)
    assert "| x AR |" in table and "| 40.0 |" in table


def test_batch_gain_is_throughput_over_the_batch1_loop():
    r = _row("m", "mask_ctc", lat=20.0, thr=250.0)  # batch 1: 50 utt/s
    assert r.batch_gain == pytest.approx(5.0)


def test_plot_styles_tell_25_systems_apart_and_the_figure_has_one_legend(tmp_path):
    """A family bench has ~25 rows: every system gets its own (colour, marker) pair, the rows of one model file
    share a marker, AR rows are squares; the figure is written with one legend for both panels."""
    models = ["ctc", "sc_ctc", "mask_ctc", "mask_ctc_sc", "mask_ctc_lp", "imputer", "imputer_sc", "mask_ctc_sc_dec3"]
    systems = [f"{m} {mode}" for m in models for mode in ("greedy", "refine5", "refine10")] + ["ar beam1", "ar beam10"]
    styles = core.plot_styles(systems, {"ar beam1", "ar beam10"})
    assert len(set(styles.values())) == len(systems) == 26
    assert styles["ar beam1"][1] == styles["ar beam10"][1] == "s"
    assert styles["imputer greedy"][1] == styles["imputer refine10"][1] != styles["imputer_sc greedy"][1]
    assert "s" not in {m for s, (_, m) in styles.items() if not s.startswith("ar ")}
    rows = [_row(s, "ar" if s.startswith("ar ") else "ctc", 5.0 + i) for i, s in enumerate(systems)]
    plot(rows, {r.system: [(3, r.lat_mean_ms), (9, r.lat_mean_ms + 1)] for r in rows}, tmp_path / "tradeoff.png")
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000
