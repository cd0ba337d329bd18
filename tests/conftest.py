"""Shared fixtures: the real-data folder (skips cleanly when absent) and small helpers (the session's fresh
run folder and determinism are set up by the project's root conftest.py)."""

from __future__ import annotations

import pytest

from klip_lib import paths


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
