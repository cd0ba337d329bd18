"""What the chain concludes from a facts record beyond its raw fields: building density, road level,
how targets are grouped, where they are and how they are spread. The chain, the realiser and the
fact-checker all use these, so a caption and its check mean the same thing."""

from __future__ import annotations

import itertools
import math

from ..vocab import TARGET_CLASSES

BUILDING_BINS: tuple[tuple[float, str], ...] = ((0.35, "dense"), (0.15, "moderate"), (0.03, "sparse"))
"""Building density from the urban + industrial fraction: the first bin whose threshold is reached, else none."""
ROAD_BINS: tuple[tuple[float, str], ...] = ((0.05, "major"), (0.01, "minor"))
"""Road presence from the road fraction: the first bin whose threshold is reached, else none."""
CLUSTER_SPAN = 0.3
"""Targets whose centres all lie within this fraction of the tile side are 'clustered', else 'scattered'."""


def _bin(value: float, bins: tuple[tuple[float, str], ...]) -> str:
    """The label of the first bin whose threshold `value` reaches, else 'none'."""
    return next((label for threshold, label in bins if value >= threshold), "none")


def building_density(facts: dict) -> str:
    """dense / moderate / sparse / none from the urban and industrial fractions."""
    fr = facts["landcover_fractions"]
    return _bin(fr.get("urban", 0.0) + fr.get("industrial", 0.0), BUILDING_BINS)


def road_level(facts: dict) -> str:
    """major / minor / none from the road fraction; unknown where roads were not measured (real tiles)."""
    if "road" in facts.get("not_measured", ()):
        return "unknown"
    return _bin(facts["landcover_fractions"].get("road", 0.0), ROAD_BINS)


def target_distribution(facts: dict) -> str | None:
    """single / clustered / scattered for the tile's targets (None without targets)."""
    centers = [t["center"] for t in facts["targets"]]
    if not centers:
        return None
    if len(centers) == 1:
        return "single"
    span = max(math.dist(a, b) for a, b in itertools.combinations(centers, 2))
    return "clustered" if span <= CLUSTER_SPAN * max(facts["width"], facts["height"]) else "scattered"


def targets_by_class(facts: dict) -> dict[str, list[dict]]:
    """The tile's targets grouped by class, in the order of vocab.TARGET_CLASSES, empty classes left out."""
    groups = {c: [t for t in facts["targets"] if t["class"] == c] for c in TARGET_CLASSES}
    return {c: ts for c, ts in groups.items() if ts}


def target_cells(targets: list[dict]) -> list[str]:
    """The distinct 3x3 cells of some targets, in order of first appearance."""
    return list(dict.fromkeys(t["grid_cell"] for t in targets))


def target_region(facts: dict) -> list[str]:
    """The main land cover of the cells holding targets, in order of first appearance."""
    return list(dict.fromkeys(facts["regional_landform"][t["grid_cell"]] for t in facts["targets"]))
