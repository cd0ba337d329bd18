"""`klip run`: order, parameters, index and metrics, and the failures a user will meet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat as nbf
import pytest

from klip_lib import offline, runner, vendor


def make_nb(folder: Path, name: str, body: str) -> Path:
    nb = nbf.v4.new_notebook()
    nb.cells = [
        nbf.v4.new_markdown_cell(f"# {name}\nA test notebook."),
        nbf.v4.new_code_cell('run_dir = "reports/scratch"\npreset = "smoke"\nseed = 0'),
        nbf.v4.new_code_cell(body),
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbf.write(nb, path)
    return path


SAVE = ('from klip_lib.report import save_metrics\n'
        'save_metrics(run_dir, "{stem}", {{"seed": seed, "preset": preset, "score": {score}}})')


@pytest.fixture
def project(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_nb(nbs, "00_first", SAVE.format(stem="00_first", score=0.5))
    make_nb(nbs, "01_second", SAVE.format(stem="01_second", score=0.75))
    return nbs, tmp_path / "reports"


def test_runs_in_order_and_merges_metrics(project):
    nbs, reports = project
    record = runner.run(seed=3, name="t1", notebooks_dir=nbs, reports_dir=reports)
    assert [r.name for r in record.notebooks] == ["00_first", "01_second"]
    assert all(r.status == "ok" for r in record.notebooks)
    run_dir = reports / "t1"
    merged = json.loads((run_dir / "metrics.json").read_text())
    assert merged == {"00_first": {"preset": "smoke", "score": 0.5, "seed": 3},
                      "01_second": {"preset": "smoke", "score": 0.75, "seed": 3}}
    index = (run_dir / "index.html").read_text()
    assert "00_first" in index and "01_second" in index and "0.75" in index
    assert (run_dir / "html" / "01_second.html").stat().st_size > 1000
    if not vendor.missing():  # the page loads no script or style from a CDN (nbconvert's default loads require.js)
        assert offline.external_refs((run_dir / "html" / "01_second.html").read_text()) == []
    assert (reports / "latest").resolve() == run_dir.resolve()
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["seed"] == 3 and len(run_json["notebooks"]) == 2


def test_only_and_from_select(project):
    nbs, reports = project
    assert [r.name for r in runner.run(only=["1"], name="t2", notebooks_dir=nbs, reports_dir=reports).notebooks] \
        == ["01_second"]
    assert [p.stem for p in runner.select(runner.discover(nbs), None, "01")] == ["01_second"]


def test_failing_notebook_names_notebook_and_cell(project):
    nbs, reports = project
    make_nb(nbs, "02_broken", 'x = 1\nraise ValueError("tile 7 has no CRS")')
    with pytest.raises(runner.RunError) as err:
        runner.run(name="t3", notebooks_dir=nbs, reports_dir=reports)
    msg = str(err.value)
    assert "02_broken.ipynb failed in cell 3: ValueError: tile 7 has no CRS" in msg
    executed = reports / "t3" / "notebooks" / "02_broken.ipynb"
    assert str(executed) in msg and "tile 7 has no CRS" in executed.read_text()
    statuses = {r["name"]: r["status"] for r in json.loads((reports / "t3" / "run.json").read_text())["notebooks"]}
    assert statuses == {"00_first": "ok", "01_second": "ok", "02_broken": "failed"}


def test_cli_exit_codes_and_one_line_errors(tmp_path):
    def klip(*args):
        return subprocess.run([sys.executable, "-m", "klip_lib.cli", "run", *args], capture_output=True, text=True)

    bad_preset = klip("--preset", "huge", "--name", "never")
    assert bad_preset.returncode == 2
    assert bad_preset.stderr.strip() == "klip run: unknown preset 'huge': choose one of gpu, smoke, study"
    bad_number = klip("--only", "99", "--name", "never")
    assert bad_number.returncode == 2 and "no notebook numbered 99" in bad_number.stderr
    assert len(bad_number.stderr.strip().splitlines()) == 1
    assert not (runner.paths.REPORTS / "never").exists()


def test_unwritable_run_dir_is_refused_before_anything_runs(project):
    nbs, reports = project
    reports.mkdir()
    (reports / "blocked").write_text("a file where the run folder should go")
    with pytest.raises(runner.RunError, match="cannot write the run folder"):
        runner.run(name="blocked", notebooks_dir=nbs, reports_dir=reports)
    assert (reports / "blocked").read_text().startswith("a file")
    assert not (reports / "latest").exists()


def test_bad_run_name(project):
    nbs, reports = project
    with pytest.raises(runner.RunError, match="bad run name"):
        runner.run(name="../escape", notebooks_dir=nbs, reports_dir=reports)


def test_source_reaches_the_notebooks_that_declare_it(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_nb(nbs, "00_plain", 'from klip_lib.report import save_metrics\nsave_metrics(run_dir, "00_plain", '
            '{"has_source": "source" in dir()})')
    nb = make_nb(nbs, "01_import", 'from klip_lib.report import save_metrics\nsave_metrics(run_dir, "01_import", '
                 '{"source": source, "add_simulated": add_simulated})')
    book = nbf.read(nb, as_version=4)
    book.cells[1].source += '\nsource = "simulate"\nadd_simulated = False'
    nbf.write(book, nb)
    assert runner.declares(nb, "source") and not runner.declares(nbs / "00_plain.ipynb", "source")
    runner.run(name="s", notebooks_dir=nbs, reports_dir=tmp_path / "reports",
               source="/data/mine", add_simulated=True)
    merged = json.loads((tmp_path / "reports" / "s" / "metrics.json").read_text())
    assert merged == {"00_plain": {"has_source": False}, "01_import": {"source": "/data/mine", "add_simulated": True}}
    with pytest.raises(runner.RunError, match="--add-simulated .* give --source too"):
        runner.run(name="t", notebooks_dir=nbs, reports_dir=tmp_path / "reports", add_simulated=True)
    book.cells[1].source = book.cells[1].source.replace("add_simulated = False", "")
    nbf.write(book, nb)
    with pytest.raises(runner.RunError, match="01_import.ipynb take source but not add_simulated"):
        runner.run(name="u", notebooks_dir=nbs, reports_dir=tmp_path / "reports", source="/d", add_simulated=True)


def test_a_preset_sets_the_parameters_its_notebooks_declare(tmp_path, monkeypatch):
    from klip_lib import presets

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nb = make_nb(nbs, "00_steps", 'from klip_lib.report import save_metrics\nsave_metrics(run_dir, "00_steps", '
                 '{"steps": steps})')
    book = nbf.read(nb, as_version=4)
    book.cells[1].source += "\nsteps = 10"
    nbf.write(book, nb)
    monkeypatch.setitem(presets.PRESETS, "bigger", {"notebooks": {"00_steps": {"steps": 500}}})
    runner.run(preset="bigger", name="b", notebooks_dir=nbs, reports_dir=tmp_path / "reports")
    runner.run(preset="smoke", name="s", notebooks_dir=nbs, reports_dir=tmp_path / "reports")
    read = lambda run: json.loads((tmp_path / "reports" / run / "metrics.json").read_text())  # noqa: E731
    assert read("b") == {"00_steps": {"steps": 500}} and read("s") == {"00_steps": {"steps": 10}}
    monkeypatch.setitem(presets.PRESETS, "typo", {"notebooks": {"00_steps": {"stepz": 500}}})
    with pytest.raises(runner.RunError, match="00_steps.ipynb: preset 'typo' sets stepz, which its parameters"):
        runner.run(preset="typo", name="t", notebooks_dir=nbs, reports_dir=tmp_path / "reports")


def test_every_preset_sets_only_declared_notebook_parameters():
    from klip_lib import paths, presets

    for name in presets.PRESETS:
        for stem, params in presets.section(name, "notebooks").items():
            nb = paths.NOTEBOOKS / f"{stem}.ipynb"
            assert nb.exists(), f"preset {name} names a notebook that does not exist: {stem}"
            assert all(runner.declares(nb, p) for p in params), (name, stem, params)
