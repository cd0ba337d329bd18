"""notebooks/03_hcot_captions.ipynb pointed at a local OpenAI-compatible server: the answer-length and JSON-mode
parameters reach the server, and the API key, taken from the environment, reaches the server but never the
executed notebook or the run's files."""

import json

import pytest
from hcot_fakes import FakeChatServer

from klip_lib.paths import NOTEBOOKS

SECRET = "sk-notebook-secret-9876543210"


@pytest.mark.slow
def test_notebook_with_openai_server_keeps_key_secret(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    answer = json.dumps({"Terrain": "The terrain is classified as plain", "Count": "Count: 3 ships"})
    out = tmp_path / "03_executed.ipynb"
    with FakeChatServer(lambda prompt: answer) as server:
        pm.execute_notebook(str(NOTEBOOKS / "03_hcot_captions.ipynb"), str(out), cwd=str(NOTEBOOKS),
                            kernel_name="python3", progress_bar=False,
                            parameters={"run_dir": str(tmp_path / "run"), "backend": "openai",
                                        "base_url": server.base_url, "llm_model": "fake", "llm_tiles": 2,
                                        "llm_steps": 8, "llm_json_mode": False})
        assert server.requests and all(r["headers"]["Authorization"] == f"Bearer {SECRET}"
                                       for r in server.requests)
        bodies = [r["body"] for r in server.requests]
        assert all(b["max_tokens"] == 25 * 8 and "response_format" not in b for b in bodies)
    files = [out, *(tmp_path / "run").rglob("*.json*")]
    assert len(files) >= 3
    for path in files:
        assert SECRET not in path.read_text(errors="ignore"), path
    metrics = json.loads((tmp_path / "run" / "metrics" / "03_hcot_captions.json").read_text())
    assert metrics["llm"]["tiles"] == 2 and metrics["llm"]["mean"]["HCoT+L5"] == 1.0
