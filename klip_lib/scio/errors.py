"""Planted caption errors with the truth kept: what calibrated SCIO learns its threshold from.

SCIO's screener is calibrated on held-out captions in which some clauses of the count / target type / position /
water / terrain dimensions are made wrong (`inject_errors`); the fact-checker says which clauses are false
(`wrong_labels`). The evaluation harness (`klip_lib.scio_inject`) uses the same planting on the training corpus to
score screening; it sits above SCIO and training, and nothing in the training path imports it. Captions with no
truth to compare with (an LLM's drafts) are labelled by the fact-check of each dimension's text (`dimension_wrong`).
"""

from __future__ import annotations

import copy
import random
import re

from ..hcot.factcheck import check_dimension
from ..hcot.realise import NUMBER_NAMES, TERRAIN_NAMES
from ..vocab import AIRCRAFT_TYPES, GRID_CELLS, SHIP_CLASSES
from .clauses import Clause, Item

ERROR_KINDS: dict[str, str] = {  # error kind -> the caption dimension it corrupts
    "count": "Count",
    "target type": "Category",
    "position": "Location",
    "water": "Water",
    "terrain": "Terrain",
}
_NUMBER = re.compile(r"\b(\d+|" + "|".join(NUMBER_NAMES[1:]) + r")\b")
_CELL = re.compile(r"\b(" + "|".join(sorted(GRID_CELLS, key=len, reverse=True)) + r")\b")
_TERRAIN = {name: cls for cls, names in TERRAIN_NAMES.items() for name in names}
_TYPE_GROUPS = (tuple(SHIP_CLASSES), tuple(AIRCRAFT_TYPES))


def _swap(body: str, pattern: re.Pattern, choices, rng: random.Random) -> str | None:
    """Replace one match of `pattern` in body by a different value from `choices(match)`."""
    matches = list(pattern.finditer(body))
    if not matches:
        return None
    m = rng.choice(matches)
    options = [c for c in choices(m.group(0)) if c != m.group(0)]
    return body[:m.start()] + rng.choice(options) + body[m.end():] if options else None


def corrupt(kind: str, body: str, facts: dict, rng: random.Random) -> str | None:
    """A wrong version of a clause for one error kind, or None when the clause offers no such mistake."""
    if kind == "count":
        def numbers(word):
            n = int(word) if word.isdigit() else NUMBER_NAMES.index(word)
            wrong = [k for k in range(1, 11) if k != n and abs(k - n) <= 3]
            return [str(k) if word.isdigit() else NUMBER_NAMES[k] for k in wrong]
        return _swap(body, _NUMBER, numbers, rng)
    if kind == "target type":
        types = sorted((t for g in _TYPE_GROUPS for t in g), key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(t) for t in types))
        present = {t["type"] for t in facts["targets"]}
        return _swap(body, pattern, lambda w: [t for g in _TYPE_GROUPS if w in g for t in g if t not in present], rng)
    if kind == "position":
        return _swap(body, _CELL, lambda w: list(GRID_CELLS), rng)
    if kind == "water":
        label = body.split(":")[0] + ": " if ":" in body else ""
        return label + ("none visible" if facts["water_present"] else "a river visible as dark, smooth areas")
    if kind == "terrain":
        pattern = re.compile("|".join(re.escape(n) for n in sorted(_TERRAIN, key=len, reverse=True)))
        return _swap(body, pattern, lambda w: [n for n, c in _TERRAIN.items() if c != _TERRAIN[w]], rng)
    raise ValueError(f"unknown error kind {kind!r}: choose from {', '.join(ERROR_KINDS)}")


def clause_true(item: Item, index: int, body: str, facts: dict) -> bool:
    """Whether clause `index` with text `body` is true: its dimension, the other clauses at their truth, checks."""
    dim = item.truth[index].dim
    if dim is None:
        return True
    parts = [body if j == index else t.body for j, t in enumerate(item.truth) if t.dim == dim]
    return check_dimension(dim, "; ".join(parts), facts)[0] is not False


def inject_errors(items: list[Item], facts: dict[str, dict], rate: float | dict[str, float], seed: int = 0,
                  kinds: tuple[str, ...] = tuple(ERROR_KINDS)) -> list[Item]:
    """Copies of the items with `rate` of the clauses of the chosen kinds' dimensions made wrong (truth kept);
    `rate` is one share for all kinds or a share per kind (a kind not named is left alone).

    A corruption is kept only when the fact-checker rejects it, so every planted error is a real mistake.
    """
    rates = rate if isinstance(rate, dict) else {k: rate for k in kinds}
    rng = random.Random(seed)
    out = []
    for it in items:
        it = copy.deepcopy(it)
        it.truth = [Clause(c.dim, c.body, c.sep) for c in it.clauses]
        it.kinds = [None] * len(it.clauses)
        for i, c in enumerate(it.clauses):
            kind = next((k for k in kinds if ERROR_KINDS[k] == c.dim), None)
            if kind is None or rng.random() >= rates.get(kind, 0.0):
                continue
            wrong = corrupt(kind, c.body, facts[it.tile_id], rng)
            if wrong and not clause_true(it, i, wrong, facts[it.tile_id]):
                c.body, it.kinds[i] = wrong, kind
        out.append(it)
    return out


def dimension_wrong(item: Item, facts: dict) -> list[bool]:
    """Per clause of an item without a truth (a caption someone else wrote, such as an LLM's draft): whether the
    text of its dimension in this view (its clauses of that dimension joined) fails the fact-check. Every clause of
    a refuted dimension counts as wrong (a draft's dimension is one statement, mostly one clause); free text and
    dimensions that do not apply count as true."""
    ok = {dim: check_dimension(dim, "; ".join(c.body for c in item.clauses if c.dim == dim), facts)[0]
          for dim in {c.dim for c in item.clauses if c.dim}}
    return [c.dim is not None and ok[c.dim] is False for c in item.clauses]


def wrong_labels(items: list[Item], facts: dict[str, dict]) -> list[list[bool]]:
    """Per item and clause: whether its current text is false (by the fact-checker): against the truth where the
    item keeps one (planted errors), else by its dimension's text (`dimension_wrong`)."""
    return [[not clause_true(it, i, c.body, facts[it.tile_id]) for i, c in enumerate(it.clauses)]
            if it.truth is not None else dimension_wrong(it, facts[it.tile_id]) for it in items]
