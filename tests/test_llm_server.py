"""HCoT captions through a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M-Instruct on a
free localhost port. `klip caption --backend openai` with concurrent requests, the server killed mid-run and
brought back, a prompt longer than the context, and `klip bench caption --backend openai`.
Skipped where llama_cpp is not importable: `bash .ci/llm-server-deps.sh` installs it.

Sized for a loaded 2-core machine (about 2 to 3 minutes for the file): one server for the module on
$KLIP_LLM_THREADS threads (default 1: llama.cpp's spinning threads slow down badly when they outnumber the free
cores), plain prompting (no JSON grammar), 25-token answers (SmolLM2-135M's plain answers are not JSON, so L5
rebuilds each caption from the facts and says so in the record), and a prompt whose instructions come before the
tile's knowledge so the server reuses their computed prefix. Every request still goes through the server."""

import json
import os
import subprocess
import sys
import time

import pytest

from klip_lib.hcot.generate import MALFORMED_NOTE, load_index_facts, read_captions
from klip_lib.hcot.schema import RECORD_KEYS
from klip_lib.hcot.server import INSTALL_HINT, LlamaServer, ServerConfig, missing_server_modules
from klip_lib.paths import ROOT

pytestmark = pytest.mark.llm_server

N_CTX = 2048  # the server's context: the longest L5 prompt of a simulated tile is about 1,000 tokens
THREADS = int(os.environ.get("KLIP_LLM_THREADS", "1"))
MAX_NEW_TOKENS = "1"  # klip caption asks for 25x this many answer tokens per tile
REQUEST_TIMEOUT_S = "300"  # per request; up to 4 requests queue at the server, each about 10 s on a busy core
RUN_TIMEOUT_S = 420  # per klip command


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    missing = missing_server_modules()
    if missing:
        pytest.skip(f"llama_cpp server not importable ({', '.join(missing)} missing): {INSTALL_HINT}")
    cfg = ServerConfig(n_ctx=N_CTX, n_threads=THREADS, log=str(tmp_path_factory.mktemp("llama") / "server.log"))
    with LlamaServer(cfg) as s:
        yield s


@pytest.fixture
def server(llama_server):
    """The module's one server, restarted if a test killed it and failed before bringing it back."""
    return llama_server.start()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from klip_lib.data import SimConfig, simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("data"), SimConfig(n_tiles=4), progress=False)


def caption_command(index, out, server, *extra) -> list[str]:
    return [sys.executable, "-m", "klip_lib.cli", "caption", "--index", str(index), "--out", str(out),
            "--backend", "openai", "--base-url", server.base_url, "--model", server.model, "--max-new-tokens",
            MAX_NEW_TOKENS, "--no-json-mode", "--retries", "0", "--timeout", REQUEST_TIMEOUT_S, "--no-progress",
            *extra]


def run_caption(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(caption_command(*args, **kw), cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


def tile_ids(index) -> list[str]:
    return [f["tile_id"] for f in load_index_facts(index)[0]]


def assert_validated(record: dict) -> None:
    """An ok record follows the contract, has no claim the fact-checker refutes after L5, and the server did
    answer its request (a draft that did not parse is quoted in the calibration notes: it must not be empty)."""
    assert record["status"] == "ok" and record["error"] is None, record["error"]
    assert set(RECORD_KEYS) <= set(record) and record["backend"] == "openai" and record["model"] == "smollm2"
    assert record["level"] == "L5" and record["text"], record
    assert all(v is not False for v in record["factcheck"].values()), record["factcheck"]
    malformed = [n for n in record["calibration"] if n.startswith(MALFORMED_NOTE)]
    assert not malformed or "in the answer: ''" not in malformed[0], malformed  # an empty answer: no generation


@pytest.mark.slow
def test_caption_cli_with_concurrent_requests(server, index, tmp_path):
    out = tmp_path / "captions.jsonl"
    start = time.perf_counter()
    proc = run_caption(index, out, server, "--concurrency", "4", "--batch-size", "4")
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] == summary["written"] == 4 and summary["failed"] == 0
    records = read_captions(out)
    assert sorted(r["tile_id"] for r in records) == sorted(tile_ids(index))
    for r in records:
        assert_validated(r)
    print(f"klip caption --backend openai: 4 tiles at concurrency 4 in {wall:.1f} s")


@pytest.mark.slow
def test_server_killed_mid_run_then_resumed(server, index, tmp_path):
    out = tmp_path / "captions.jsonl"
    run = subprocess.Popen(caption_command(index, out, server, "--concurrency", "2", "--batch-size", "2"),
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(read_captions(out, repair=False)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.poll() is None, "the run ended before the server could be killed"
        server.kill()  # the first batch is written, the second is in flight
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    first = read_captions(out)
    assert run.returncode == 1, stdout + stderr  # failed tiles make the exit code 1
    ok = [r for r in first if r["status"] == "ok"]
    failed = [r for r in first if r["status"] == "failed"]
    assert len(ok) == 2 and len(failed) == 2
    assert all("no answer after 4 tries" in r["error"] for r in failed), failed[0]["error"]

    server.start()  # back on the same port
    proc = run_caption(index, out, server, "--concurrency", "2", "--retry-failed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["written"] == 2  # only the failed tiles again
    records = read_captions(out)
    assert sorted(r["tile_id"] for r in records) == sorted(tile_ids(index))  # each tile exactly once
    assert records[:2] == ok  # the tiles captioned before the crash are kept as they were
    for r in records:
        assert_validated(r)


@pytest.mark.slow
def test_prompt_longer_than_context_fails_that_tile_only(server, tmp_path):
    from hcot_fakes import random_facts, write_dataset

    index = write_dataset(tmp_path / "data", 3)
    big = random_facts(1)  # a tile with so many targets that its prompt exceeds the context
    target = {"id": 0, "class": "vehicle", "type": "car", "length_m": 4.5, "width_m": 1.8, "heading_deg": 10.0,
              "bbox": [10, 10, 12, 12], "center": [11.0, 11.0], "grid_cell": "top-left"}
    big["targets"] = [dict(target, id=i) for i in range(120)]
    big["counts"] = {"ship": 0, "aircraft": 0, "storage tank": 0, "vehicle": 120}
    (tmp_path / "data" / "labels" / "sim_000001.json").write_text(json.dumps(big))
    out = tmp_path / "captions.jsonl"
    proc = run_caption(index, out, server, "--concurrency", "3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = {r["tile_id"]: r for r in read_captions(out)}
    assert sorted(records) == ["sim_000000", "sim_000001", "sim_000002"]
    failed = records["sim_000001"]
    assert failed["status"] == "failed" and "HTTP 400" in failed["error"]
    assert f"maximum context length is {N_CTX} tokens" in failed["error"], failed["error"]
    assert_validated(records["sim_000000"])
    assert_validated(records["sim_000002"])


@pytest.mark.slow
def test_bench_prints_rates_per_concurrency_and_accuracy(server, index):
    proc = subprocess.run([sys.executable, "-m", "klip_lib.cli", "bench", "caption", "--backend", "openai",
                           "--index", str(index), "--base-url", server.base_url, "--model", server.model,
                           "--tiles", "1", "--concurrency", "1,2", "--max-new-tokens", MAX_NEW_TOKENS,
                           "--no-json-mode", "--retries", "0", "--timeout", REQUEST_TIMEOUT_S, "--accuracy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "captions/s" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["concurrency 1", "concurrency 2"]
    for line in lines:
        assert "1 captions" in line and "0 failed" in line
        tokens_per_s = float(line.split("captions/s, ")[1].split(" tokens/s")[0])
        assert tokens_per_s > 0
    [accuracy] = [line for line in proc.stdout.splitlines() if "accuracy over 1 tiles" in line]
    assert "HCoT+L5 1.000" in accuracy, accuracy  # L5 repairs every claim the draft got wrong or left out


def test_ci_prepares_the_server_before_make_test():
    """CI builds llama-cpp-python before `make test`, so the tests above run there instead of skipping."""
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert "bash .ci/llm-server-deps.sh" in ci and "make test" in ci
    assert ci.index("make venv") < ci.index("bash .ci/llm-server-deps.sh") < ci.index("make test") == len(ci) - 1
