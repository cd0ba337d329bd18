"""The HCoT knowledge chain: one function per level, each returning structured facts and its prompt text.

L0 is the baseline (image metadata only). L1..L4 add geoscience, social development, SAR knowledge and
instance identification from a facts record (docs/contracts.md). L5 (knowledge calibration) adds no prompt
text: it cross-checks an LLM's draft against the facts of L1..L4, repairs or drops what contradicts them and
records why.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..vocab import CAPTION_DIMENSIONS, TARGET_CLASSES
from .factcheck import check_dimension
from .knowledge import (
    building_density,
    road_level,
    target_cells,
    target_distribution,
    target_region,
    targets_by_class,
)
from .realise import realise_dimension, tile_rng

WAVELENGTH_CM = {"X": 3.1, "C": 5.6, "S": 9.4, "L": 23.5, "P": 70.0}
"""Centre wavelength of each radar band in cm."""


@dataclass
class Level:
    """One level of the chain: its name, what it concluded, and the text it adds to the prompt."""

    name: str  # "L0".."L5"
    title: str  # what kind of knowledge this level adds
    facts: dict  # structured conclusions of this level
    text: str  # the lines this level adds to the prompt


def level0(facts: dict) -> Level:
    """L0, the baseline: image metadata only (sensor, band, polarization, resolution, size)."""
    keys = ("platform", "band", "polarizations", "resolution_m", "width", "height")
    meta = {k: facts[k] for k in keys if k in facts}
    text = (f"A SAR image from {meta.get('platform', 'an unknown sensor')}, {meta.get('band', '?')}-band, "
            f"polarization {'/'.join(meta.get('polarizations', [])) or '?'}, {meta.get('resolution_m', '?')} m "
            f"pixels, {meta.get('width', '?')} x {meta.get('height', '?')} pixels.")
    return Level("L0", "image metadata", meta, text)


def level1_geoscience(facts: dict) -> Level:
    """L1: where the tile is (lon/lat, city, country, climate), its terrain, coast, rivers and water bodies."""
    out = {k: facts[k] for k in ("city", "country", "continent", "lon", "lat", "climate", "coastal", "river",
                                 "terrain", "water_present", "water_kinds")}
    water = (f"Water bodies in the tile: {', '.join(out['water_kinds']) or 'water'}." if out["water_present"]
             else "There is no water body in the tile.")
    if out["water_present"] is None:
        water = "Whether the tile holds water is unknown."
    where = (f"lies at lon {out['lon']:.2f}, lat {out['lat']:.2f}" if out["lon"] is not None
             else "has no georeference (its position is unknown)")
    site = "the coast is unknown" if out["coastal"] is None else "a coastal site" if out["coastal"] else "an inland site"
    text = (f"Geoscience: the tile {where}, near {out['city']}, "
            f"{out['country']} ({out['continent']}), {out['climate']} climate; "
            f"{site}{' on a river' if out['river'] else ''}. "
            f"The terrain is {out['terrain']}. {water}")
    return Level("L1", "geoscience", out, text)


def level2_social(facts: dict) -> Level:
    """L2: regional function and planning from land cover, the city's port/airport, buildings and roads."""
    fr = facts["landcover_fractions"]
    out = {"main_landform": facts["main_landform"], "landforms_present": list(facts["landforms_present"]),
           "regional_landform": dict(facts["regional_landform"]), "has_port": facts["has_port"],
           "has_airport": facts["has_airport"], "buildings": building_density(facts), "roads": road_level(facts),
           "fractions": {c: fr[c] for c in facts["landforms_present"]}}
    shares = ", ".join(f"{c} {100 * fr[c]:.0f}%" for c in out["landforms_present"])
    cells = ", ".join(f"{cell}: {cls}" for cell, cls in out["regional_landform"].items())
    text = (f"Social development: the main land cover is {out['main_landform']}; land cover present: {shares}. "
            f"Main class per 3x3 cell: {cells}. Building density: {out['buildings']}; roads: {out['roads']}. "
            f"Port: {_yes_no(out['has_port'], 'the city has a port', 'the city has no port')}; airport: "
            f"{_yes_no(out['has_airport'], 'the city has an airport', 'the city has no airport')}.")
    return Level("L2", "social development", out, text)


def _yes_no(value, yes: str, no: str) -> str:
    """`yes` / `no` for True / False, 'unknown' for None (a fact no source knows)."""
    return "unknown" if value is None else yes if value else no


def _known(value, fmt: str, unit: str = "") -> str:
    return "unknown" if value is None else f"{value:{fmt}}{unit}"


def level3_sar(facts: dict) -> Level:
    """L3: SAR knowledge: band, wavelength, polarization, resolution, incidence, and what is bright or dark."""
    out = {k: facts[k] for k in ("platform", "band", "polarizations", "resolution_m", "incidence_deg", "looks")}
    out["wavelength_cm"] = WAVELENGTH_CM.get(facts["band"])
    present = set(facts["landforms_present"])
    rules = ["calm water is dark (specular reflection away from the sensor)" if "water" in present else None,
             "buildings and industrial roofs are bright (double bounce between walls and ground)"
             if present & {"urban", "industrial", "port"} else None,
             "metal targets (ships, aircraft, tanks, vehicles) are bright points with sidelobe crosses"
             if facts["targets"] else None,
             "forest gives a medium, grainy volume scattering" if "forest" in present else None,
             "fields and bare soil are dark to medium with smooth texture" if present & {"farmland", "bare"} else None,
             "runways and roads are dark smooth strips" if present & {"road", "airport"} else None,
             "slopes facing the sensor are bright and may show layover" if facts["terrain"] in ("hilly", "mountain")
            else None]
    out["rules"] = [r for r in rules if r]
    wl = f" ({out['wavelength_cm']} cm)" if out["wavelength_cm"] else ""
    text = (f"SAR knowledge: {out['platform']} {out['band']}-band{wl}, {'/'.join(out['polarizations'])} "
            f"polarization, {_known(out['resolution_m'], '', ' m')} pixels, incidence {_known(out['incidence_deg'], '.1f', ' deg')}, "
            f"{_known(out['looks'], '')} looks. " + "; ".join(out["rules"]).capitalize() + ".")
    return Level("L3", "SAR knowledge", out, text)


def level4_instances(facts: dict) -> Level:
    """L4: instance identification: counts, types, sizes in metres from pixel spacing, positions, distribution."""
    res = facts["resolution_m"]
    groups = targets_by_class(facts)
    classes = {}
    lines = []
    for cls, targets in groups.items():
        lengths = [t["length_m"] for t in targets if t["length_m"] is not None]
        classes[cls] = {"count": len(targets), "types": list(dict.fromkeys(t["type"] for t in targets)),
                        "length_m": [min(lengths), max(lengths)] if lengths else None, "cells": target_cells(targets)}
        for t in targets:
            x0, y0, x1, y1 = t["bbox"]
            size = (f"{t['length_m']:.0f} m long, {t['width_m']:.0f} m wide" if t["length_m"] is not None
                    else "size unknown (no pixel spacing)")
            lines.append(f"{cls} {t['id']}: box {x1 - x0}x{y1 - y0} px at {_known(res, '', ' m')} spacing, "
                         f"{size}, type {t['type']}, in the {t['grid_cell']} cell")
    out = {"counts": {c: facts["counts"].get(c, 0) for c in TARGET_CLASSES}, "classes": classes,
           "distribution": target_distribution(facts), "region": target_region(facts)}
    if not groups:
        return Level("L4", "instance identification", out, "Instances: no ships, aircraft, storage tanks or "
                     "vehicles in the tile.")
    text = (f"Instances: {'; '.join(lines)}. Overall the targets are {out['distribution']}, in cells whose "
            f"land cover is {', '.join(out['region'])}.")
    return Level("L4", "instance identification", out, text)


LEVEL_FUNCTIONS = (level0, level1_geoscience, level2_social, level3_sar, level4_instances)


def build_chain(facts: dict, level: str) -> list[Level]:
    """The levels a prompt at `level` uses: L0 alone, or L1..min(level, L4) (L5 prompts with L1..L4)."""
    if level == "L0":
        return [level0(facts)]
    top = min(int(level[1:]), 4)
    return [f(facts) for f in LEVEL_FUNCTIONS[1:top + 1]]


def level5_calibrate(draft: dict[str, str | None] | None, facts: dict, seed: int = 0,
                     mode: str = "repair") -> tuple[dict[str, str | None], Level]:
    """L5: cross-check a draft (None when the LLM's answer was malformed) against the facts of L1..L4.

    Each dimension that contradicts the facts, is missing, or describes absent targets is repaired (rewritten
    from the facts, mode "repair") or dropped (set to None, mode "drop"). Returns the calibrated dimensions and
    a Level whose facts hold one note per change ("Count: counts claimed {...}, facts {...}; repaired") and
    the draft's own fact-check.
    """
    if mode not in ("repair", "drop"):
        raise ValueError(f"unknown calibration mode {mode!r}: choose 'repair' or 'drop'")
    rng = tile_rng(facts, seed, "L5")
    draft = draft or {}
    dims, notes, draft_check = {}, [], {}
    for d in CAPTION_DIMENSIONS:
        ok, why = check_dimension(d, draft.get(d), facts)
        dims[d], draft_check[d] = draft.get(d), ok
        if ok is False:
            dims[d] = realise_dimension(d, facts, rng) if mode == "repair" else None
            notes.append(f"{d}: {why}; {'repaired' if dims[d] else 'dropped'} (draft: {draft.get(d)!r})")
    text = "Calibration: " + (" | ".join(notes) if notes else "the draft agrees with levels 1 to 4.")
    return dims, Level("L5", "knowledge calibration", {"mode": mode, "changes": notes, "draft_factcheck": draft_check},
                       text)
