"""A 2-process torchrun (gloo, CPU) gives the losses and weights of one process with the combined batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from distributed_worker import run

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_with_the_combined_batch(tmp_path):
    single = run()
    out = tmp_path / "two.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(HERE / "distributed_worker.py"), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["queue_filled"] == single["queue_filled"] == 16
    for step, (a, b) in enumerate(zip(single["losses"], two["losses"], strict=True)):
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=1e-4, abs=1e-5), (step, name)
    assert two["checksum"] == pytest.approx(single["checksum"], rel=1e-5)
