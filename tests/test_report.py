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


# ---- issue 22: claims ledger, task pages, radar chart with baselines and methods apart ----

RUN = {
    "05_scio": {"tasks": {"scio/screening": {"task": "screening", "headline": "f1", "models": {
        "scio": {"f1": 0.3}, "random flagging": {"f1": 0.16}, "capfilt": {"f1": 0.2}}}}},
    "06_eval_classification": {"tasks": {"classification/sar_acd": {
        "task": "classification", "headline": "linear_probe_accuracy",
        "models": {"random": {"linear_probe_accuracy": 0.4}, "blip-like": {"linear_probe_accuracy": 0.5},
                   "klip": {"linear_probe_accuracy": 0.55}},
        "counts": {"train": {"a": 30, "b": 30}, "test": {"a": 10, "b": 10}}, "ci": {"klip": [0.45, 0.65]}}}},
    "09_eval_retrieval": {"tasks": {"retrieval/sim": {
        "task": "retrieval", "headline": "r_mean", "models": {"random": {"r_mean": 0.1}, "klip": {"r_mean": 0.08}},
        "baseline": {"name": "random ranking", "r_mean": 0.12}, "images": 24}}},
    "10_eval_captioning": {"tasks": {"captioning/sim": {
        "task": "captioning", "headline": "cider", "models": {"klip": {"cider": 1.5}, "blip-like": {"cider": 1.2}},
        "baselines": {"most common facts": {"cider": 0.5}}, "n_test": 24, "ci": {"klip": [1.2, 1.8]}}}},
    "12_loss": {"tasks": {"error/sim": {"task": "error", "headline": "rmse", "higher_is_better": False,
                                        "models": {"random": {"rmse": 2.0}, "klip": {"rmse": 1.0}},
                                        "baseline": {"name": "mean", "rmse": 0.5}}}},
}


def test_claims_file_holds_the_papers_values_with_their_source():
    from klip_lib import ledger

    claims = {(c.task, c.dataset): c for c in ledger.load_claims()}
    assert len(claims) == 16
    assert (claims["classification", "SAR-ACD"].paper, claims["classification", "SAR-ACD"].previous_best) == (91, 69)
    assert (claims["captioning", "not named on the figure"].paper, claims["vqa all landforms", "not named on the figure"]
            .previous_best) == (118, 48)
    assert all("fu/figure/radar_v2.jpg" in c.source and "names no metric" in c.source for c in claims.values())


def test_ledger_puts_this_runs_number_beside_each_claim():
    from klip_lib import ledger

    rows = {(r["task"], r["dataset"]): r for r in ledger.ledger_rows(RUN)}
    acd = rows["classification", "SAR-ACD"]
    assert acd["block"] == "classification/sar_acd" and acd["ours"] == pytest.approx(55.0)
    assert acd["ours_ci"] == pytest.approx((45.0, 65.0)) and acd["best_other_name"] == "blip-like"
    assert acd["differs"].startswith("same dataset, a sample of it") and "test 20" in acd["differs"]
    ret = rows["retrieval", "not named on the figure"]
    assert ret["ours"] == pytest.approx(8.0) and ret["ours_ci"] is None
    assert (ret["best_other_name"], ret["best_other"]) == ("random ranking", pytest.approx(12.0))  # a baseline counts
    assert ret["differs"].startswith("not run on the same data: ours simulated tiles") and "24 images" in ret["differs"]
    air = rows["detection", "FuSAR-AIR"]
    assert air["ours"] is None and air["differs"].startswith("not run on the same data")
    page = ledger.ledger_html(RUN)
    assert "radar_v2.jpg" in page and "<td>118</td>" in page and "55.0 [45.0, 65.0]" in page and "8.0 [—]" in page
    assert "<td>+22 / +5.0</td>" in page and "<td>+11 / -4.0</td>" in page  # SAR-ACD and retrieval


def test_task_pages_show_rows_intervals_data_and_figures(tmp_path):
    from klip_lib import task_pages

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "06_confusion_sar_acd.png").write_bytes(b"png")
    (tmp_path / "figures" / "09_retrieval_recalls.png").write_bytes(b"png")
    pages = task_pages.write_task_pages(tmp_path, RUN)
    assert pages["classification"] == "tasks/classification.html" and set(pages) == {
        "classification", "retrieval", "captioning", "screening", "error"}
    cls = (tmp_path / pages["classification"]).read_text()
    assert "src='../figures/06_confusion_sar_acd.png'" in cls and "09_retrieval" not in cls
    assert "[0.450, 0.650]" in cls and "<td>—</td>" in cls  # klip's interval; none for blip-like
    assert "<tr class='baseline'><td>random</td>" in cls and "test 20" in cls and "SAR-ACD" in cls
    ret = (tmp_path / pages["retrieval"]).read_text()
    assert "<tr class='baseline'><td>random ranking</td>" in ret and "24 images" in ret
    cap = (tmp_path / pages["captioning"]).read_text()
    assert "most common facts" in cap and "[1.200, 1.800]" in cap and "24 test items" in cap
    assert "href='tasks/classification.html'" in task_pages.links_html(pages)
    assert "none: no evaluation notebook" in task_pages.links_html({})


def test_radar_keeps_methods_and_baselines_apart_and_marks_unbeaten_axes(tmp_path):
    models, baselines, methods = report.radar_tables(RUN)
    assert "scio" not in models.index and list(methods.index) == ["scio", "random flagging", "capfilt"]
    assert baselines.loc["random ranking", "retrieval/sim r_mean"] == 0.12
    assert baselines.loc["mean", "error/sim rmse ↓"] == pytest.approx(1.0)  # lower is better: best / value
    assert models.loc["klip", "error/sim rmse ↓"] == pytest.approx(0.5)
    assert viz.unbeaten_axes(models, baselines) == ["error/sim rmse ↓", "retrieval/sim r_mean"]
    png = tmp_path / "radar.png"
    fig = viz.radar_chart(models, baselines=baselines, methods=methods, save_to=png)
    labels = {t.get_text(): t.get_color() for t in fig.axes[0].get_xticklabels()}
    assert labels["x retrieval\nsim r_mean"] == "#c00000" and "captioning\nsim cider" in labels
    assert len(fig.axes) == 2 and png.stat().st_size > 10_000


def test_baselines_read_both_forms():
    assert report.baselines({"baseline": {"name": "majority", "accuracy": 0.3}}) == {"majority": {"accuracy": 0.3}}
    assert report.baselines({"baselines": {"a": {"f1": 0.1}}, "baseline": {"name": "b", "f1": 0.2}}) == {
        "a": {"f1": 0.1}, "b": {"f1": 0.2}}
    assert report.interval({"ci": {"klip": [0.1, 0.2]}}, "klip") == (0.1, 0.2)
    assert report.interval({"ci": {"klip": [None, 0.2]}}, "klip") is None and report.interval({}, "klip") is None


def test_task_pages_of_a_relative_run_folder_land_in_the_projects(monkeypatch, tmp_path):
    """The notebooks' run_dir is relative ('reports/scratch'); nbval runs them from notebooks/: pages must still
    go to the resolved run folder, not to notebooks/reports/."""
    from klip_lib import paths, task_pages

    monkeypatch.setenv(paths.SCRATCH_ENV, str(tmp_path / "fresh"))
    monkeypatch.chdir(paths.NOTEBOOKS)
    pages = task_pages.write_task_pages(paths.SCRATCH, RUN)
    assert pages and all((tmp_path / "fresh" / p).is_file() for p in pages.values())
    assert not (paths.NOTEBOOKS / "reports").exists()


def test_pretraining_effects_read_the_intervals():
    """Helped, hurt or no difference shown, from disjoint or overlapping 95% intervals against random init (or,
    where every model is fine-tuned, against the supervised model from scratch); small test sets are not evidence."""
    block = lambda models, ci, up=True, n=400, **extra: {  # noqa: E731
        "task": "t", "headline": "m", "higher_is_better": up, "n_test": n, "ci": ci,
        "models": {k: {"m": v} for k, v in models.items()}, **extra}
    metrics = {"06": {"tasks": {
        "probe": block({"random": 0.3, "klip": 0.6, "blip-like": 0.35, "clip-like": 0.1},
                       {"random": [0.25, 0.35], "klip": [0.55, 0.65], "blip-like": [0.3, 0.4], "clip-like": [0.05, 0.15],
                        "raw-pixel probe": [0.7, 0.8]},
                       baselines={"raw-pixel probe": {"m": 0.75}, "chance": {"m": 0.17}}),
        "finetune": {"task": "t", "headline": "finetune_accuracy", "n_test": 400, "models": {"klip": {"finetune_accuracy": 0.9}},
                     "ci": {"klip": [0.85, 0.95], "supervised (scratch)": [0.6, 0.7]},
                     "baselines": {"supervised (scratch)": {"finetune_accuracy": 0.65}}},
        "error": block({"random": 2.0, "klip": 1.0}, {"random": [1.8, 2.2], "klip": [0.9, 1.1]}, up=False),
        "tiny": block({"random": 0.1, "klip": 0.9}, {"random": [0.0, 0.2], "klip": [0.8, 1.0]}, n=16),
        "screening": block({"calibrated": 0.2}, {"calibrated": [0.1, 0.3]}, task="screening"),
    }}}
    table = report.pretraining_effects(metrics).set_index(["task", "model"])["pretraining"].to_dict()
    assert table == {("error m ↓", "klip"): "helped", ("finetune finetune_accuracy", "klip"): "helped",
                     ("probe m", "blip-like"): "no difference shown", ("probe m", "clip-like"): "hurt",
                     ("probe m", "klip"): "helped", ("tiny m", "klip"): "not evidence"}
    rows = report.pretraining_effects(metrics).set_index(["task", "model"])
    assert rows.loc[("probe m", "klip"), "strongest baseline"] == "raw-pixel probe 0.750 [0.700, 0.800]"
    assert rows.loc[("probe m", "klip"), "vs baseline"] == "worse"
    assert rows.loc[("finetune finetune_accuracy", "klip"), "no pretraining"] == "supervised (scratch) 0.650 [0.600, 0.700]"
    scratch_only = {"06": {"tasks": {"probe": block({"klip": 0.5}, {"klip": [0.45, 0.55], "supervised (scratch)": [0.75, 0.85]},
                                                    baselines={"supervised (scratch)": {"m": 0.8}})}}}
    assert report.pretraining_effects(scratch_only)["pretraining"].tolist() == ["n/a (no reference)"]  # no fair one
    metrics["06"]["tasks"]["probe"]["ci"].pop("raw-pixel probe")  # then an exact value: klip's interval lies below it
    assert report.pretraining_effects(metrics).set_index(["task", "model"]).loc[("probe m", "klip"), "vs baseline"] \
        == "worse"
    metrics["06"]["tasks"]["probe"]["ci"]["klip"] = [float("nan"), 0.65]  # undefined in some resamples
    assert report.pretraining_effects(metrics).set_index(["task", "model"]).loc[("probe m", "klip"), "pretraining"] \
        == "n/a (no interval)"
