"""Set up for every test session, `pytest tests`, `pytest notebooks` or both (as `make test` runs them).

Each session gets a fresh run folder for the notebooks' default `reports/scratch` ($KLIP_SCRATCH, which the nbval
kernels inherit), so no test reads artifacts an older version of the code left in a working checkout; the smoke
artifacts are built once in it and shared by the notebooks, keyed by their manifests (klip_lib.artifacts).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from klip_lib import determinism, paths


def pytest_configure(config):
    # nbval reads a cell's iopub messages only after the cell has finished and gives up 5 s (hard-coded) after the
    # last one; a progress bar redrawn every 0.1 s for minutes queues more widget messages than ZeroMQ keeps (1,000
    # per socket), the cell's closing 'idle' is dropped and the cell fails "waiting for output" (notebook 10's three
    # 300-step captioner bars did). Kernels inherit this: tqdm reads its defaults from TQDM_* variables.
    os.environ.setdefault("TQDM_MININTERVAL", "2")
    if not os.environ.get(paths.SCRATCH_ENV):
        config._klip_scratch = os.environ[paths.SCRATCH_ENV] = tempfile.mkdtemp(prefix="klip-scratch-")
    determinism.configure()  # as `klip run` and every notebook do


def pytest_unconfigure(config):
    made = getattr(config, "_klip_scratch", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(paths.SCRATCH_ENV, None)
