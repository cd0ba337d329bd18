"""Which tiles carry ground truth: the simulator's facts records are the truth of their tiles; a real tile's facts
are knowledge inferred by `klip_lib.knowledge` (geography, metadata, CFAR and Otsu on the image), good enough to
caption the tile but not labels to score a model against. The task notebooks score their simulated blocks only on
ground-truth tiles and skip them for a dataset imported with `--source`."""

from __future__ import annotations

import os

from .dataset import load_facts


def is_ground_truth(facts: dict | None) -> bool:
    """True for the simulator's facts record; False for None and for a real tile's inferred facts (they carry
    `knowledge_source`, docs/contracts.md)."""
    return bool(facts) and "knowledge_source" not in facts


def _truth_flags(index_path: str | os.PathLike):
    """`is_ground_truth` of each tile of an index, read lazily (facts files one by one)."""
    from .index import read_index

    for f in read_index(index_path, columns=["facts_path"])["facts_path"].tolist():
        yield is_ground_truth(load_facts(index_path, f))


def simulated_tiles(index_path: str | os.PathLike) -> int:
    """How many tiles of an index carry simulated ground truth (0 for an imported dataset)."""
    return sum(_truth_flags(index_path))


def no_ground_truth(index_path: str | os.PathLike, what: str) -> str | None:
    """None when the index holds a simulated tile (it stops reading at the first); else the one line saying that
    `what` (a simulated block of a task notebook) is skipped, and why."""
    if any(_truth_flags(index_path)):
        return None
    return (f"the run's dataset is imported: no simulated ground truth (its targets are knowledge inferred for "
            f"captions, not labels): {what} skipped")


def dataset_kind(facts: list[dict | None]) -> str:
    """What the tiles behind a set of facts records are: `sim` (all simulated), `imported` (none: real tiles whose
    facts and captions are inferred knowledge) or `mixed`. The vision-language notebooks file their blocks under it
    (`retrieval/imported`), so a real-data run never reports a `/sim` score."""
    truth = [is_ground_truth(f) for f in facts]
    return "sim" if all(truth) else "imported" if not any(truth) else "mixed"
