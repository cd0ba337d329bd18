"""The openai backend against a local chat-completions server, with its failures; the API key stays secret."""

import json
import os
import subprocess
import sys

import pytest
from hcot_fakes import FakeChatServer, random_facts, rotterdam_facts, write_dataset

from klip_lib.hcot.backends import BackendError, Job, OpenAIBackend
from klip_lib.hcot.chain import build_chain
from klip_lib.hcot.generate import caption_batch, read_captions
from klip_lib.paths import ROOT

SECRET = "sk-test-very-secret-0123456789"
GOOD = json.dumps({"Terrain": "The terrain is classified as plain", "Count": "Count: 3 ships"})


def answer(prompt: str) -> str:
    return GOOD


def backend(server, **kw) -> OpenAIBackend:
    options = dict(base_url=server.base_url, model="fake-model", timeout_s=0.5, retries=2, backoff_s=0.01)
    options.update(kw)
    return OpenAIBackend(**options)


def test_request_format_and_key_from_environment(monkeypatch):
    monkeypatch.setenv("MY_KEY", SECRET)
    with FakeChatServer(answer) as server:
        out = backend(server, api_key_env="MY_KEY").draft([Job(rotterdam_facts(), build_chain(rotterdam_facts(), "L5"))])
    assert out == [GOOD]
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "fake-model"
    assert req["body"]["response_format"] == {"type": "json_object"}
    assert req["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "Rotterdam" in req["body"]["messages"][1]["content"]


def test_no_key_no_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeChatServer(answer) as server:
        backend(server).draft([Job(random_facts(1))])
    assert "Authorization" not in server.requests[0]["headers"]


@pytest.mark.parametrize("failure", ["500", "timeout", "badjson", "drop"])
def test_transient_failures_are_retried(failure):
    with FakeChatServer(answer, script=[failure, failure]) as server:
        out = backend(server).draft([Job(random_facts(1))])
    assert out == [GOOD] and len(server.requests) == 3


def test_retries_back_off_exponentially(monkeypatch):
    import time

    waits, sleep = [], time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: waits.append(s) or sleep(s))
    with FakeChatServer(answer, script=["500", "timeout"]) as server:
        out = backend(server, backoff_s=0.05).draft([Job(random_facts(1))])
    assert out == [GOOD] and [w for w in waits if w in (0.05, 0.1)] == [0.05, 0.1]


def test_client_errors_are_not_retried():
    with FakeChatServer(answer, default="401") as server:
        [out] = backend(server).draft([Job(random_facts(1))])
    assert isinstance(out, BackendError) and len(server.requests) == 1
    assert "HTTP 401" in str(out) and "invalid api key" in str(out) and "--base-url" in str(out)


@pytest.mark.parametrize("failure, message", [("500", "HTTP 500"), ("timeout", "Timeout"),
                                              ("badjson", "malformed response body"), ("drop", "Error")])
def test_persistent_failures_are_recorded_as_failed(failure, message):
    with FakeChatServer(answer, default=failure) as server:
        [out] = backend(server, retries=1).draft([Job(random_facts(1))])
        assert isinstance(out, BackendError) and message in str(out)
        [rec] = caption_batch([random_facts(1)], backend(server, retries=1), "L5")
    assert rec["status"] == "failed" and message in rec["error"] and rec["text"] == ""


def test_malformed_answer_retried_then_repaired_at_l5_or_failed_below():
    facts = random_facts(3)
    with FakeChatServer(answer, script=["garbage"]) as server:
        [rec] = caption_batch([facts], backend(server), "L4", retries=1)
    assert rec["status"] == "ok" and rec["Terrain"] == "The terrain is classified as plain"
    assert server.requests[1]["body"]["temperature"] > 0  # the retry samples
    with FakeChatServer(answer, default="garbage") as server:
        [l4] = caption_batch([facts], backend(server), "L4", retries=1)
        [l5] = caption_batch([facts], backend(server), "L5", retries=1)
    assert l4["status"] == "failed" and "MalformedOutput" in l4["error"]
    assert l5["status"] == "ok" and "draft malformed" in l5["calibration"][0]
    assert all(v is not False for v in l5["factcheck"].values())


def test_concurrent_requests():
    with FakeChatServer(answer, latency_s=0.3) as server:
        import time
        start = time.perf_counter()
        out = backend(server, concurrency=8, timeout_s=5).draft([Job(random_facts(i)) for i in range(8)])
        elapsed = time.perf_counter() - start
    assert out == [GOOD] * 8 and elapsed < 1.5


def test_missing_settings_are_named():
    with pytest.raises(BackendError, match="--base-url"):
        OpenAIBackend(base_url="", model="m")
    with pytest.raises(BackendError, match="--model"):
        OpenAIBackend(base_url="http://x/v1", model="")


@pytest.mark.slow
def test_cli_keeps_the_key_out_of_jsonl_and_logs(tmp_path):
    index = write_dataset(tmp_path / "ds", 6)
    out = tmp_path / "captions.jsonl"
    env = dict(os.environ, OPENAI_API_KEY=SECRET)
    with FakeChatServer(answer, script=["500", "garbage", "drop"]) as server:
        proc = subprocess.run([sys.executable, "-m", "klip_lib.cli", "caption", "--index", str(index), "--out",
                               str(out), "--backend", "openai", "--base-url", server.base_url, "--model", "fake",
                               "--timeout", "2", "--concurrency", "3"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert proc.returncode == 0, proc.stderr
    assert len(read_captions(out)) == 6
    for text in (out.read_text(), proc.stdout, proc.stderr):
        assert SECRET not in text
