"""The captions JSONL schema (docs/contracts.md) and the validation of an LLM's JSON answer."""

from __future__ import annotations

import hashlib
import json
import re

from ..vocab import CAPTION_DIMENSIONS

LEVELS: tuple[str, ...] = ("L0", "L1", "L2", "L3", "L4", "L5")
RECORD_KEYS: tuple[str, ...] = (  # the contract's fields, in the order make_record writes them
    ("tile_id",) + CAPTION_DIMENSIONS
    + ("text", "level", "backend", "model", "prompt_hash", "factcheck", "status", "error")
)


class MalformedOutput(ValueError):
    """An LLM answer that is not one JSON object of caption dimensions."""


def prompt_hash(prompt: str) -> str:
    """A short stable hash of a prompt (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def caption_text(dims: dict[str, str | None]) -> str:
    """The full caption: the filled dimensions as sentences, in the order of CAPTION_DIMENSIONS."""
    parts = [dims[d].strip().rstrip(".") for d in CAPTION_DIMENSIONS if dims.get(d)]
    return ". ".join(parts) + ("." if parts else "")


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_CANONICAL = {d.lower(): d for d in CAPTION_DIMENSIONS}


def parse_dimensions(raw: str) -> dict[str, str | None]:
    """Validate an LLM answer: one JSON object whose keys are caption dimensions and values strings or null.

    Text around the object (a code fence, a preamble) is ignored; missing dimensions become None; a key that is
    a dimension in another letter case ("terrain", as small models write it) counts as that dimension.
    Raises MalformedOutput saying what is wrong.
    """
    match = _JSON_OBJECT.search(raw or "")
    if not match:
        raise MalformedOutput(f"no JSON object in the answer: {raw[:80]!r}")
    try:
        obj = json.loads(match.group(0))
    except json.JSONDecodeError as e:
        raise MalformedOutput(f"invalid JSON ({e.msg} at char {e.pos}): {match.group(0)[:80]!r}") from None
    if not isinstance(obj, dict):
        raise MalformedOutput("the JSON answer is not an object")
    named = {}
    for key, value in obj.items():
        dim = _CANONICAL.get(key.lower(), key)
        if dim in named:
            raise MalformedOutput(f"{dim} is given twice (keys differ only in letter case)")
        named[dim] = value
    obj = named
    unknown = sorted(set(obj) - set(CAPTION_DIMENSIONS))
    if unknown:
        raise MalformedOutput(f"unknown keys {unknown}; expected some of {list(CAPTION_DIMENSIONS)}")
    dims: dict[str, str | None] = {}
    for d in CAPTION_DIMENSIONS:
        value = obj.get(d)
        if value is not None and not isinstance(value, str):
            raise MalformedOutput(f"{d} is a {type(value).__name__}, expected a string or null")
        dims[d] = value.strip() or None if isinstance(value, str) else None
    if not any(dims.values()):
        raise MalformedOutput("the JSON answer fills no dimension")
    return dims


def make_record(tile_id: str, dims: dict[str, str | None], *, level: str, backend: str, model: str,
                prompt: str, factcheck: dict[str, bool | None], status: str = "ok",
                error: str | None = None, calibration: list[str] | None = None) -> dict:
    """One captions-JSONL object; `calibration` (L5's notes on what it repaired or dropped) is kept when given."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: choose one of {', '.join(LEVELS)}")
    record = {"tile_id": tile_id}
    record.update({d: dims.get(d) for d in CAPTION_DIMENSIONS})
    record.update(text=caption_text(dims), level=level, backend=backend, model=model,
                  prompt_hash=prompt_hash(prompt), factcheck=factcheck, status=status, error=error)
    if calibration is not None:
        record["calibration"] = calibration
    return record


def record_key(record: dict) -> tuple[str, str, str, str]:
    """What makes a caption unique in a file: (tile, level, backend, model)."""
    return (record["tile_id"], record["level"], record["backend"], record["model"])
