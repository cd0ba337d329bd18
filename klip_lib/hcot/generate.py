"""Caption generation: drafts from a backend, validation, retries, L5 calibration, fact-checking, and a
resumable JSONL file (one line per write, flushed and fsynced; a torn last line from a kill is cut off on resume)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import InputError
from .backends import Job, make_backend
from .chain import build_chain, level5_calibrate
from .factcheck import check_caption
from .prompts import messages, prompt_text
from .schema import LEVELS, MalformedOutput, make_record, parse_dimensions, record_key

MALFORMED_NOTE = "draft malformed after retries"  # how an L5 record's calibration notes start when it had no draft


@dataclass
class CaptionConfig:
    """How to caption an index."""

    backend: str = "template"  # template / transformers / openai
    level: str = "L5"  # L0 baseline, L1..L4 chain prompts, L5 = L1..L4 prompt + calibration
    model: str = ""  # transformers: model folder or .gguf (default SmolLM2-135M); openai: served model name
    base_url: str = ""  # openai: server URL ending in /v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: environment variable holding the API key (never a flag)
    concurrency: int = 4  # openai: requests in flight
    batch_size: int = 16  # tiles drafted per backend call (and rows per generate() for transformers)
    max_new_tokens: int = 32  # transformers: tokens per dimension; openai uses 25x this for the whole object
    timeout_s: float = 60.0  # openai: seconds per request
    json_mode: bool = True  # openai: ask for response_format json_object (False: plain prompting, still validated)
    retries: int = 1  # re-asks of a malformed answer (sampling instead of greedy)
    seed: int = 0  # phrasing and sampling seed


def backend_from_config(cfg: CaptionConfig):
    """The backend a config names, built with the options that backend takes."""
    if cfg.backend == "transformers":
        return make_backend("transformers", model=cfg.model, max_new_tokens=cfg.max_new_tokens,
                            batch_size=cfg.batch_size)
    if cfg.backend == "openai":
        return make_backend("openai", base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                            concurrency=cfg.concurrency, timeout_s=cfg.timeout_s,
                            max_tokens=25 * cfg.max_new_tokens, json_mode=cfg.json_mode)
    return make_backend(cfg.backend)


def caption_batch(facts_list: list[dict], backend, level: str = "L5", seed: int = 0, retries: int = 1) -> list[dict]:
    """Captions (JSONL records) for some tiles: draft, validate, retry malformed, calibrate at L5, fact-check.

    A malformed answer is asked again `retries` times; then L5 rebuilds it from the facts (noted in the record's
    `calibration`) and lower levels record it as failed. A backend error is recorded as failed.
    """
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}: choose one of {', '.join(LEVELS)}")
    if backend.name == "template" and level not in ("L4", "L5"):
        raise InputError(f"the template backend writes the facts of L1..L4, so it runs at L4 or L5, not {level}")
    jobs = [Job(f, build_chain(f, level), seed) for f in facts_list]
    answers: list = [None] * len(jobs)
    pending = list(range(len(jobs)))
    for attempt in range(retries + 1):
        for j in pending:
            jobs[j].attempt = attempt
        for j, raw in zip(pending, backend.draft([jobs[j] for j in pending])):
            answers[j] = raw if isinstance(raw, Exception) else _parse(raw)
        pending = [j for j in pending if isinstance(answers[j], MalformedOutput)]
        if not pending:
            break
    return [_record(job, ans, backend, level, seed) for job, ans in zip(jobs, answers)]


def _parse(raw: str):
    try:
        return parse_dimensions(raw)
    except MalformedOutput as e:
        return e


def same_prompt(a: dict, b: dict) -> bool | None:
    """Whether two captions records of a tile were written from the same prompt (the same facts, the same prompt
    code): None where it cannot tell, as when their levels prompt differently (L5 prompts as L4 does, then
    calibrates) or a record carries no prompt hash."""
    level = lambda r: "L4" if r.get("level") == "L5" else r.get("level")  # noqa: E731
    if level(a) != level(b) or not a.get("prompt_hash") or not b.get("prompt_hash"):
        return None
    return a["prompt_hash"] == b["prompt_hash"]


def _record(job: Job, answer, backend, level: str, seed: int) -> dict:
    facts = job.facts
    prompt = prompt_text(messages(job.levels))
    common = dict(level=level, backend=backend.name, model=backend.model, prompt=prompt)
    if isinstance(answer, Exception) and not (level == "L5" and isinstance(answer, MalformedOutput)):
        return make_record(facts["tile_id"], {}, factcheck=check_caption({}, facts), status="failed",
                           error=f"{type(answer).__name__}: {answer}", **common)
    if level != "L5":
        return make_record(facts["tile_id"], answer, factcheck=check_caption(answer, facts), **common)
    draft = None if isinstance(answer, Exception) else answer
    dims, l5 = level5_calibrate(draft, facts, seed)
    notes = ([f"{MALFORMED_NOTE} ({answer}); rebuilt from levels 1 to 4"] if draft is None else []) \
        + l5.facts["changes"]
    draft_check = l5.facts["draft_factcheck"]
    changed = {d: dims[d] for d in dims if draft_check[d] is False}
    factcheck = {**draft_check, **check_caption(changed, facts, only=changed)}
    record = make_record(facts["tile_id"], dims, factcheck=factcheck, calibration=notes, **common)
    record["draft_factcheck"] = draft_check
    return record


def read_captions(path: str | os.PathLike, repair: bool = True) -> list[dict]:
    """The records of a captions JSONL file. A torn last line (a write cut by a kill) is ignored and, with
    `repair`, cut off the file; a broken line elsewhere raises with its line number."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise InputError(f"{path}: line {i + 1} is not valid JSON; fix or delete that line and rerun") from None
            if repair:  # the torn last line: cut it off
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(line))
            return records
    if repair and data and not data.endswith(b"\n"):  # a whole last record whose newline was lost
        with open(path, "ab") as f:
            f.write(b"\n")
    return records


class CaptionWriter:
    """Appends records to a JSONL file, one write per line, flushed and fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_index_facts(index: str | os.PathLike, splits: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """The facts records an index points to (of the tiles in `splits`, all when empty), and the tile ids it has
    without facts (these are not captioned)."""
    from ..data.index import read_index

    index = Path(index)
    df = read_index(index, ["tile_id", "facts_path"] + (["split"] if splits else []))
    if splits:
        df = df[df["split"].isin(splits)]
    facts, skipped = [], []
    for tile_id, facts_path in zip(df["tile_id"], df["facts_path"]):
        if not facts_path:
            skipped.append(tile_id)
            continue
        facts.append(json.loads((index.parent / facts_path).read_text()))
    return facts, skipped


def generate_captions(index: str | os.PathLike, out: str | os.PathLike, cfg: CaptionConfig | None = None,
                      retry_failed: bool = False, progress: bool = True, backend=None,
                      splits: tuple[str, ...] = ()) -> dict:
    """Caption every tile of an index with facts (of the tiles in `splits`, all when empty) into `out`, skipping
    those already there; returns a summary.

    With `retry_failed`, failed records are first removed from the file (rewritten atomically) and redone.
    """
    cfg = cfg or CaptionConfig()
    facts, skipped = load_index_facts(index, splits)
    out = Path(out)
    done = read_captions(out)
    if retry_failed and any(r["status"] == "failed" for r in done):
        done = [r for r in done if r["status"] != "failed"]
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done), encoding="utf-8")
        os.replace(tmp, out)
    backend = backend or backend_from_config(cfg)
    have = {record_key(r) for r in done}
    todo = [f for f in facts if (f["tile_id"], cfg.level, backend.name, backend.model) not in have]
    counts = {"ok": 0, "failed": 0}
    with CaptionWriter(out) as writer, tqdm(total=len(todo), desc=f"captions {cfg.backend} {cfg.level}",
                                            disable=not progress) as bar:
        for i in range(0, len(todo), cfg.batch_size):
            for record in caption_batch(todo[i:i + cfg.batch_size], backend, cfg.level, cfg.seed, cfg.retries):
                writer.write(record)
                counts[record["status"]] += 1
            bar.update(len(todo[i:i + cfg.batch_size]))
    return {"path": str(out), "tiles": len(facts), "already_done": len(facts) - len(todo), "written": len(todo),
            "ok": counts["ok"], "failed": counts["failed"], "without_facts": len(skipped)}
