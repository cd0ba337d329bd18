"""Metrics files of a run: each notebook saves its own, `klip run` merges them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from .paths import run_path


def _clean(value):
    """JSON-safe numbers: numpy scalars to Python, NaN/inf to None."""
    if hasattr(value, "item") and not isinstance(value, (dict, list, tuple)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """Write JSON through a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(obj), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_metrics(run_dir: str | os.PathLike, stem: str, metrics: dict) -> Path:
    """Save one notebook's metrics as `run_dir/metrics/<stem>.json` and return the path."""
    return write_json_atomic(run_path(run_dir, "metrics", f"{stem}.json"), metrics)


def load_metrics(run_dir: str | os.PathLike) -> dict[str, dict]:
    """All metrics saved in a run, keyed by notebook stem."""
    folder = run_path(run_dir, "metrics", create=False)
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
