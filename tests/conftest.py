"""Shared fixtures: the real-data folder (skips cleanly when absent) and small helpers.

Every test session gets a fresh run folder for the notebooks' default `reports/scratch` ($KLIP_SCRATCH, which
the nbval kernels inherit), so no test reads artifacts an older version of the code left in a working checkout;
the smoke artifacts are built once in it and shared by the notebooks, keyed by their manifests.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from klip_lib import determinism, paths


def pytest_configure(config):
    if not os.environ.get(paths.SCRATCH_ENV):
        config._klip_scratch = os.environ[paths.SCRATCH_ENV] = tempfile.mkdtemp(prefix="klip-scratch-")
    determinism.configure()  # as `klip run` and every notebook do


def pytest_unconfigure(config):
    made = getattr(config, "_klip_scratch", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(paths.SCRATCH_ENV, None)


@pytest.fixture(scope="session")
def real_data_dir():
    """../shared/data/real beside the project, or a skip naming where it was looked for."""
    found = paths.real_data()
    if found is None:
        pytest.skip(f"real SAR samples not found at {paths.resolve(paths.DEFAULT_REAL_DATA)}")
    return found


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests where CUDA is missing, with the reason in the report."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
