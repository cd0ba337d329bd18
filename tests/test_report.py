"""Gathering a run's metrics into the comparison table, the radar chart and the report section."""

from __future__ import annotations

import json

import pytest

from klip_lib import report, viz

METRICS = {
    "06_eval_classification": {"tasks": {
        "classification/sim": {"task": "classification", "headline": "accuracy", "higher_is_better": True,
                               "models": {"random": {"accuracy": 0.25}, "klip": {"accuracy": 0.75}}},
        "classification/sar_acd": {"task": "classification", "headline": "accuracy",
                                   "models": {"random": {"accuracy": 0.5}, "klip": {"accuracy": 0.6}}},
    }},
    "09_eval_retrieval": {"task": "retrieval", "headline": "r_mean", "models": {"random": {"r_mean": 10.0},
                                                                               "blip-like": {"r_mean": 40.0}}},
    "12_loss": {"task": "error", "headline": "rmse", "higher_is_better": False,
                "models": {"random": {"rmse": 2.0}, "klip": {"rmse": 1.0}}},
    "00_environment": {"checks_ok": 22},
}


def test_table_has_every_task_and_model():
    table = report.comparison_table(METRICS)
    assert list(table.columns) == ["classification/sar_acd accuracy", "classification/sim accuracy",
                                   "error rmse ↓", "retrieval r_mean"]
    assert set(table.index) == {"random", "klip", "blip-like"}
    assert table.loc["klip", "classification/sim accuracy"] == 0.75
    assert table.isna().loc["blip-like", "classification/sim accuracy"]  # not scored there: NaN, not 0


def test_radar_scores_invert_lower_is_better():
    scores = report.radar_scores(report.comparison_table(METRICS))
    assert scores.loc["klip", "error rmse ↓"] == pytest.approx(1.0)
    assert scores.loc["random", "error rmse ↓"] == pytest.approx(0.5)


def test_radar_chart_and_section(tmp_path):
    table = report.comparison_table(METRICS)
    png = tmp_path / "radar.png"
    viz.radar_chart(report.radar_scores(table), save_to=png)
    assert png.stat().st_size > 10_000
    html = report.report_section(table, {"git_commit": "abc", "wall_time_s": {"04_pretrain": 12.5}},
                                 {"radar chart": "figures/radar.png"}, {"remoteclip": "path /x missing"})
    assert 'src="figures/radar.png"' in html and "0.750" in html and "n/a" in html
    assert "remoteclip: not provided (path /x missing)" in html and "04_pretrain" in html


def test_provenance_reads_run_json(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"preset": "smoke", "seed": 7, "started": "now",
                                                   "notebooks": [{"name": "00_environment", "seconds": 3.5}]}))
    prov = report.provenance(tmp_path)
    assert prov["preset"] == "smoke" and prov["seed"] == 7
    assert prov["wall_time_s"] == {"00_environment": 3.5}
    assert len(prov["git_commit"]) == 40 and "torch" in prov["versions"]


def test_saved_metrics_are_json_clean(tmp_path):
    import numpy as np

    report.save_metrics(tmp_path, "x", {"a": np.float32(0.5), "b": float("nan"), "c": [np.int64(3)]})
    assert report.load_metrics(tmp_path) == {"x": {"a": 0.5, "b": None, "c": [3]}}
