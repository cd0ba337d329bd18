"""The notebook conventions of DESIGN.md, checked on every notebook in notebooks/."""

from __future__ import annotations

import ast

import nbformat as nbf
import pytest

from klip_lib import paths, runner

NOTEBOOKS = sorted(runner.discover().values())


def test_notebooks_exist_and_are_numbered_uniquely():
    names = [p.name for p in sorted(paths.NOTEBOOKS.glob("*.ipynb"))]
    assert names, "no notebooks found"
    assert len(names) == len(NOTEBOOKS), f"notebooks not named NN_topic.ipynb: {names}"
    assert NOTEBOOKS[0].name == "00_environment.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_stripped_with_one_parameters_cell(path):
    nb = nbf.read(path, as_version=4)
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not with_outputs, f"{path.name}: cells {with_outputs} carry outputs; store notebooks stripped"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters' (want exactly one)"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), \
        f"{path.name}: the first cell must be a '# Title' markdown cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_primitives_with_the_common_three(path):
    cell = next(c for c in nbf.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    names = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: parameters cell holds only `name = literal` lines, found {ast.dump(node)[:60]}"
        names[node.targets[0].id] = ast.literal_eval(node.value)  # raises on anything derived
    assert {"run_dir", "preset", "seed"} <= names.keys(), f"{path.name}: needs run_dir, preset and seed"
    assert names["preset"] == "smoke" and names["run_dir"] == "reports/scratch"
    assert not any("key" in n.lower() or "token" in n.lower() for n in names), \
        f"{path.name}: secrets do not belong in parameters (Papermill writes them into the executed copy)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_steps_are_short(path):
    long_cells = [i for i, c in enumerate(nbf.read(path, as_version=4).cells)
                  if c.cell_type == "code" and len(c.source.strip().splitlines()) > 25]
    assert not long_cells, f"{path.name}: code cells {long_cells} exceed 25 lines; move the logic into klip_lib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    """Papermill's inspector skips lines it cannot parse (e.g. '=' or quotes in a comment) with only a warning."""
    from papermill.translators import PythonTranslator

    cell = next(c for c in nbf.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    parsed = [p.name for p in PythonTranslator.inspect(cell)]
    assert len(parsed) == len(lines), f"{path.name}: papermill parses only {parsed}; rephrase the other comments"
