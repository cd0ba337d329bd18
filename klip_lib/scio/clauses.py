"""Clauses of a caption with their character and token spans, views that fit the text window, and the corpus
of items (one view of one tile's caption) SCIO screens."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vocab import CAPTION_DIMENSIONS


# clauses -------------------------------------------------------------------------------------------
@dataclass
class Clause:
    dim: str | None  # caption dimension the clause belongs to (None for free text)
    body: str  # the clause's words, without the separator that follows it
    sep: str  # the separator after it (". ", "; ", "." or ""): body + sep pieces rebuild the caption

    @property
    def piece(self) -> str:
        return self.body + self.sep


_SPLIT = re.compile(r"(;\s+|\.\s+|\.$)")


def _split_span(text: str, dim: str | None) -> list[Clause]:
    """Clauses of one span of text, cut after '; ' and '. ' (and a final '.')."""
    parts = _SPLIT.split(text)
    out = []
    for body, sep in zip(parts[0::2], parts[1::2] + [""]):
        if body:
            out.append(Clause(dim, body, sep))
        elif sep and out:
            out[-1].sep += sep
    return out


def split_clauses(text: str, dims: dict[str, str | None] | None = None) -> list[Clause]:
    """Clauses of a caption; with the record's dimensions each clause is labelled with its dimension.

    `"".join(c.piece for c in split_clauses(t))` is `t` exactly.
    """
    if not dims:
        return _split_span(text, None)
    out, pos = [], 0
    for d in CAPTION_DIMENSIONS:
        value = (dims.get(d) or "").strip().rstrip(".")
        at = text.find(value, pos) if value else -1
        if at < 0:
            continue
        if at > pos:  # text between dimensions (none in captions written by caption_text)
            out += _split_span(text[pos:at], None)
        end = at + len(value)
        while end < len(text) and text[end] in ". ":
            end += 1
        out += _split_span(text[at:end], d)
        pos = end
    if pos < len(text):
        out += _split_span(text[pos:], None)
    return out


def join_clauses(clauses: list[Clause]) -> str:
    """The text of some clauses, in order (trailing whitespace removed)."""
    return "".join(c.piece for c in clauses).rstrip()


def token_spans(tokenizer, clauses: list[Clause]) -> list[tuple[int, int]]:
    """[start, end) token positions of each clause in the tokenized joined text ([CLS] is position 0)."""
    text = join_clauses(clauses)
    offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)["offset_mapping"]
    bounds, pos = [], 0
    for c in clauses:
        bounds.append((pos, pos + len(c.piece)))
        pos += len(c.piece)
    spans = []
    for lo, hi in bounds:
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and lo <= a < hi]
        spans.append((inside[0], inside[-1] + 1) if inside else (0, 0))
    return spans


def pack_views(clauses: list[Clause], tokenizer, max_tokens: int) -> list[list[int]]:
    """Clause indices grouped, in order, into views whose text fits `max_tokens` (with [CLS] and [SEP]). The clauses
    of one dimension stay in one view wherever they fit in one: a dimension is one statement, and the fact-check
    reads its clauses together (a Size split over two views read as two sizes missing)."""
    budget = max_tokens - 2
    sizes = [len(tokenizer.tokenize(c.piece)) for c in clauses]
    groups: list[list[int]] = []  # runs of clauses of one dimension (free text: one clause each)
    for i, c in enumerate(clauses):
        if groups and c.dim is not None and clauses[groups[-1][-1]].dim == c.dim:
            groups[-1].append(i)
        else:
            groups.append([i])
    units = [u for g in groups for u in ([g] if sum(sizes[i] for i in g) <= budget else [[i] for i in g])]
    views: list[list[int]] = []
    used = 0
    for u in units:
        n = sum(sizes[i] for i in u)
        if views and used + n <= budget:
            views[-1] += u
            used += n
        else:
            views.append(list(u))
            used = n
    return views


# the corpus SCIO works on --------------------------------------------------------------------------
@dataclass
class Item:
    """One view of a caption: the clauses SCIO screens together against one image."""

    tile_id: str  # the tile (image) the caption describes
    row: int  # the tile's position in the image tensor the corpus is scored with
    clauses: list[Clause]  # the view's clauses, current text
    truth: list[Clause] | None = None  # the true clauses (error-injection harness), aligned with `clauses`
    kinds: list[str | None] = field(default_factory=list)  # error kind injected per clause (None: untouched)
    flagged: list[bool] = field(default_factory=list)  # screening result per clause (latest round)

    def text(self, keep: list[bool] | None = None) -> str:
        return join_clauses([c for c, k in zip(self.clauses, keep or [True] * len(self.clauses)) if k])


def corpus_from_records(records: list[dict], tile_rows: dict[str, int], tokenizer, max_tokens: int) -> list[Item]:
    """Views of the captions of the tiles in `tile_rows` (tile_id -> image row)."""
    items = []
    for r in records:
        if r.get("status", "ok") != "ok" or r["tile_id"] not in tile_rows:
            continue
        clauses = split_clauses(r["text"], r)
        for view in pack_views(clauses, tokenizer, max_tokens):
            cl = [clauses[i] for i in view]
            items.append(Item(r["tile_id"], tile_rows[r["tile_id"]], cl, None, [None] * len(cl), [False] * len(cl)))
    return items


def write_corpus(items: list[Item], path: str | Path, proofread: bool) -> Path:
    """A captions JSONL with one line per view; with `proofread`, flagged clauses are left out of the text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for it in items:
        keep = [not f for f in it.flagged] if proofread else None
        text = it.text(keep)
        if text:
            lines.append(json.dumps({"tile_id": it.tile_id, "text": text, "status": "ok"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def per_clause_zeros(items: list[Item]) -> list[np.ndarray]:
    """One zero per clause of each item: the value of a feature that is not computed."""
    return [np.zeros(len(it.clauses)) for it in items]
