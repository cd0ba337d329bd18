"""`klip bench study`: a finished run's time against its budget and its models x tasks table."""

from __future__ import annotations

import argparse
import json

import pytest

from klip_lib import runner, study_bench


def fake_run(folder, seconds: dict[str, float]):
    """A run folder as `klip run` leaves it: run.json with each notebook's time, one metrics file with two blocks."""
    notebooks = [{"name": nb.stem, "number": n, "seconds": seconds.get(n, 0.0), "status": "ok"}
                 for n, nb in runner.discover().items() if n in seconds]
    (folder / "run.json").write_text(json.dumps({"name": folder.name, "preset": "study", "seed": 0,
                                                 "started": "2026-12-03T18:40:00", "notebooks": notebooks}))
    block = lambda ci, n: {"task": "t", "headline": "m", "n_test": n, "ci": ci,  # noqa: E731
                           "models": {k: {"m": sum(v) / 2} for k, v in ci.items()}}
    (folder / "metrics").mkdir()
    (folder / "metrics" / "06_eval_classification.json").write_text(json.dumps({"tasks": {
        "probe": block({"random": [0.25, 0.35], "klip": [0.55, 0.65]}, 400),
        "tiny": block({"random": [0.0, 0.2], "klip": [0.1, 0.3]}, 16)}}))
    return argparse.Namespace(run_dir=str(folder), budget_minutes=60.0)


def test_prints_time_against_the_budget_and_the_table(tmp_path, capsys):
    numbers = list(runner.discover())
    args = fake_run(tmp_path, {n: 300.0 for n in numbers})  # 5 minutes each
    assert study_bench.bench(args) == 0
    out = capsys.readouterr().out
    assert f"total {5 * len(numbers):.1f} min: OVER the 60-minute budget" in out
    row = next(line for line in out.splitlines() if line.startswith("| probe m"))
    assert "klip" in row and "0.600 [0.550, 0.650]" in row and "helped" in row
    assert "| tiny m" in out and "- tiny:" in out  # the small test set is named below the table


def test_an_unfinished_run_is_not_judged(tmp_path, capsys):
    first = list(runner.discover())[0]
    study_bench.bench(fake_run(tmp_path, {first: 60.0}))
    out = capsys.readouterr().out
    assert "1.0 min so far; not run or not finished:" in out and "budget" not in out


def test_a_folder_without_a_run_record_says_so(tmp_path):
    with pytest.raises(study_bench.StudyBenchError, match="run.json"):
        study_bench.bench(argparse.Namespace(run_dir=str(tmp_path), budget_minutes=60.0))
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(study_bench.StudyBenchError, match="not a run record"):
        study_bench.bench(argparse.Namespace(run_dir=str(tmp_path), budget_minutes=60.0))
