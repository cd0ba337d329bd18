"""Where things are: the project root, run folders, the real-data samples.

Relative paths given by a user (notebook parameters, CLI flags) are taken relative to the project
root, so a notebook run from `notebooks/`, a test and `klip run` all mean the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_REAL_DATA = "../shared/data/real"
SCRATCH = "reports/scratch"  # the notebooks' default run folder (each notebook also runs alone into it)
SCRATCH_ENV = "KLIP_SCRATCH"  # where SCRATCH points instead when set: the test suite's fresh folder per session


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path: `path` itself when absolute, else relative to the project root; the default run folder
    `reports/scratch` is $KLIP_SCRATCH when that is set."""
    if os.environ.get(SCRATCH_ENV) and Path(path) == Path(SCRATCH):
        path = os.environ[SCRATCH_ENV]
    p = Path(path).expanduser()
    return p if p.is_absolute() else (ROOT / p).resolve()


def run_path(run_dir: str | os.PathLike, *parts: str, create: bool = True) -> Path:
    """A path inside a run folder; the folder (and the parent of the path) is created when asked."""
    p = resolve(run_dir).joinpath(*parts)
    if create:
        (p.parent if parts else p).mkdir(parents=True, exist_ok=True)
    return p


def real_data(path: str | os.PathLike = DEFAULT_REAL_DATA) -> Path | None:
    """The real-sample folder when present, else None (callers skip with a clear message)."""
    p = resolve(path)
    return p if p.is_dir() else None
