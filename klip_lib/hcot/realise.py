"""The template backend's realiser: the facts of L1..L4 written out as the 16 caption dimensions.

Deterministic per (tile, seed), with several phrasings per dimension, in the style of the released
FUSAR-GEOVL captions ("The terrain is classified as ...", "Water presence: ..."). Every phrasing uses only
words the fact-checker reads back to the same fact (tests/test_hcot_factcheck.py holds them to that).
"""

from __future__ import annotations

import random

from ..vocab import CAPTION_DIMENSIONS
from . import knowledge

TERRAIN_NAMES = {"plain": ("plain", "flat plain", "lowland plain"), "hilly": ("hilly area", "hilly terrain"),
                 "mountain": ("mountainous area", "mountain terrain")}
FUNCTION_NAMES = {
    "water": ("open water area", "water-dominated area"),
    "urban": ("urban residential area", "built-up residential district"),
    "industrial": ("industrial zone", "industrial estate"),
    "farmland": ("agricultural farmland", "farmland with cultivated parcels"),
    "forest": ("forest and woodland", "woodland"),
    "bare": ("bare land", "barren open land"),
    "road": ("road transport corridor", "road network area"),
    "airport": ("airport with runways and aprons", "airport area"),
    "port": ("port and harbour area", "port logistics zone"),
}
BUILDING_PHRASES = {"dense": ("dense, compact buildings", "abundant buildings"),
                    "moderate": ("moderate building density", "moderately built blocks"),
                    "sparse": ("sparse, scattered buildings", "few scattered buildings"),
                    "none": ("no buildings visible", "none visible")}
ROAD_PHRASES = {"major": ("major road network clearly visible", "main roads run across the tile"),
                "minor": ("minor, narrow roads", "a few small roads"),
                "none": ("no visible roads", "none visible"),
                "unknown": ("unknown (not measured in the image)",)}
WATER_KIND_NAMES = {"river": "a river", "coast": "the coast", "lake": "a lake", "port basin": "port basins"}
FEATURE_PHRASES = {
    "ship": ("ships show bright, elongated returns on a dark background", "ships appear as bright linear "
             "scatterers with sidelobe streaks"),
    "aircraft": ("aircraft show bright cross-shaped returns of fuselage and wings", "aircraft appear as "
                 "bright points outlining fuselage and wings"),
    "storage tank": ("storage tanks appear as bright circular rings", "storage tanks show a bright arc from "
                     "the roof-wall double bounce"),
    "vehicle": ("vehicles are small bright points", "vehicles appear as tiny bright returns"),
}
PLURALS = {"ship": "ships", "aircraft": "aircraft", "storage tank": "storage tanks", "vehicle": "vehicles"}
NUMBER_NAMES = "zero one two three four five six seven eight nine ten".split()
SPREAD_PHRASES = {"single": ("a single isolated target", "one isolated target"),
                  "clustered": ("the targets are clustered together", "the targets are grouped closely"),
                  "scattered": ("the targets are scattered across the tile", "the targets are widely dispersed")}


def _and(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _count(n: int, cls: str, rng: random.Random) -> str:
    number = NUMBER_NAMES[n] if n < len(NUMBER_NAMES) and rng.random() < 0.5 else str(n)
    return f"{number} {cls if n == 1 else PLURALS[cls]}"


def terrain(facts, rng):
    """Terrain class."""
    if facts["terrain"] not in TERRAIN_NAMES:
        return "Terrain type: unknown (no elevation source)"
    name = rng.choice(TERRAIN_NAMES[facts["terrain"]])
    return rng.choice(("The terrain is classified as {}", "Terrain type: {}", "The terrain is a {}")).format(name)


def functionality(facts, rng):
    """Main land use (and the second land cover)."""
    text = rng.choice(FUNCTION_NAMES[facts["main_landform"]])
    if len(facts["landforms_present"]) > 1 and rng.random() < 0.5:
        text += f", with {facts['landforms_present'][1]} areas"
    return rng.choice(("The area functionality is described as {}", "Functionality: {}")).format(text)


def distribution(facts, rng):
    """Main class per 3x3 cell, grouped by class."""
    cells: dict[str, list[str]] = {}
    for cell, cls in facts["regional_landform"].items():
        cells.setdefault(cls, []).append(cell)
    verbs = ("occupies", "covers", "dominates", "is found in")
    parts = [f"{cls} {rng.choice(verbs)} the {_and(cs)}" for cls, cs in cells.items()]
    return rng.choice(("Functional distribution: ", "Distribution: ")) + "; ".join(parts)


def layout(facts, rng):
    """The land covers present."""
    present = facts["landforms_present"]
    if len(present) == 1:
        return f"Spatial layout: a uniform {present[0]} area"
    return "Spatial layout: " + rng.choice(("a mix of {} areas", "a mosaic of {}", "{} arranged in patches")
                                            ).format(_and(present))


def boundary(facts, rng):
    """Boundaries between the two largest land covers."""
    present = facts["landforms_present"]
    if len(present) == 1:
        return f"Boundary features: no internal boundaries within the {present[0]} area"
    a, b = present[:2]
    if "water" in (a, b):
        return f"Boundary features: sharp, high-contrast boundaries between {a} and {b}"
    return f"Boundary features: {rng.choice(('gradual', 'soft'))} transitions between {a} and {b} areas"


def buildings(facts, rng):
    """Building density."""
    return "Building presence: " + rng.choice(BUILDING_PHRASES[knowledge.building_density(facts)])


def roads(facts, rng):
    """Road level."""
    return "Road presence: " + rng.choice(ROAD_PHRASES[knowledge.road_level(facts)])


def water(facts, rng):
    """Water bodies, or none."""
    if facts["water_present"] is None:
        return "Water presence: unknown (no threshold separates water in this image)"
    if not facts["water_present"]:
        return "Water presence: " + rng.choice(("none visible", "no water bodies visible"))
    kinds = [WATER_KIND_NAMES[k] for k in facts["water_kinds"]] or ["open water"]
    return "Water presence: " + rng.choice(("{} visible as dark, smooth areas", "{}")).format(_and(kinds))


def count(facts, rng):
    """Targets per class."""
    groups = knowledge.targets_by_class(facts)
    if not groups:
        return "Count: " + rng.choice(("no ships, aircraft, storage tanks or vehicles are visible",
                                       "no targets: no ships, no aircraft, no storage tanks, no vehicles"))
    listed = _and([_count(len(ts), cls, rng) for cls, ts in groups.items()])
    return rng.choice(("Count: {}", "There are {} in the tile", "The image contains {}")).format(listed)


def location(facts, rng):
    """3x3 cells of each target class."""
    groups = knowledge.targets_by_class(facts)
    parts = [rng.choice(("the {} are in the {}", "{}: {}")).format(PLURALS[c], _and(knowledge.target_cells(ts)))
             for c, ts in groups.items()]
    return "Location: " + "; ".join(parts)


def feature(facts, rng):
    """How each target class looks in SAR."""
    return "Feature: " + "; ".join(rng.choice(FEATURE_PHRASES[c]) for c in knowledge.targets_by_class(facts))


def size(facts, rng):
    """Length range per target class."""
    parts = []
    for cls, ts in knowledge.targets_by_class(facts).items():
        lengths = [t["length_m"] for t in ts if t["length_m"] is not None]
        if not lengths:
            parts.append(f"the size of the {PLURALS[cls]} is unknown (no pixel spacing)")
            continue
        lo, hi = min(lengths), max(lengths)
        if round(lo) == round(hi):
            verb = rng.choice(("measure", "span"))
            parts.append(f"the {PLURALS[cls]} {verb} about {hi:.0f} m" if len(ts) > 1
                         else f"the {cls} {verb}s about {hi:.0f} m")
        else:
            parts.append(rng.choice((f"the {PLURALS[cls]} range from {lo:.0f} m to {hi:.0f} m",
                                     f"{cls} lengths between {lo:.0f} m and {hi:.0f} m")))
    return "Size: " + "; ".join(parts)


def category(facts, rng):
    """Target types per class."""
    parts = [f"{PLURALS[c]}: {_and(list(dict.fromkeys(t['type'] for t in ts)))}"
             for c, ts in knowledge.targets_by_class(facts).items()]
    return rng.choice(("Category: ", "Target types: ")) + "; ".join(parts)


def target_distribution(facts, rng):
    """How the targets are spread."""
    return "Target distribution: " + rng.choice(SPREAD_PHRASES[knowledge.target_distribution(facts)])


def region(facts, rng):
    """Land cover of the cells holding targets."""
    classes = _and(knowledge.target_region(facts))
    return "Region: " + rng.choice(("the targets lie in {} areas", "the targets sit in cells dominated by {}")
                                   ).format(classes)


def environment(facts, rng):
    """City, country, coastal or inland, climate (what no source knows is said to be unknown)."""
    if facts["city"] == "unknown" and facts["country"] == "unknown":
        return "Environment: location unknown (no georeference)"
    setting = {True: "a coastal", False: "an inland", None: "a"}[facts["coastal"]]
    climate = "an unknown climate" if facts["climate"] == "unknown" else f"a {facts['climate']} climate"
    return "Environment: " + rng.choice(("near {city}, {country}, {setting} site with {climate}",
                                         "{city} ({country}), {setting} setting, {climate}")).format(
        city=facts["city"], country=facts["country"], setting=setting, climate=climate)


REALISERS = {
    "Terrain": terrain, "Functionality": functionality, "Distribution": distribution, "Layout": layout,
    "Boundary": boundary, "Buildings": buildings, "Roads": roads, "Water": water, "Count": count,
    "Location": location, "Feature": feature, "Size": size, "Category": category,
    "TargetDistribution": target_distribution, "Region": region, "Environment": environment,
}
TARGET_ONLY = frozenset(CAPTION_DIMENSIONS[9:])
"""Dimensions left empty (null) for a tile without targets."""


def tile_rng(facts: dict, seed: int, salt: str = "") -> random.Random:
    """The phrasing generator for one tile: the same (tile, seed, salt) always gives the same choices."""
    return random.Random(f"{facts['tile_id']}:{seed}:{salt}")


def realise_dimension(dim: str, facts: dict, rng: random.Random) -> str | None:
    """One dimension's text from the facts, or None where it does not apply."""
    if dim in TARGET_ONLY and not facts["targets"]:
        return None
    return REALISERS[dim](facts, rng)


def realise(facts: dict, seed: int = 0) -> dict[str, str | None]:
    """All 16 dimensions of a tile's caption, deterministic per (tile, seed)."""
    rng = tile_rng(facts, seed)
    return {d: realise_dimension(d, facts, rng) for d in CAPTION_DIMENSIONS}
