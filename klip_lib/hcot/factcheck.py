"""Fact-checking: parse each dimension's claims back from text and compare them with the facts record.

Each check returns (ok, reason): ok is True when every parsed claim agrees with the facts, False when a claim
contradicts them, the dimension is missing, or it says nothing checkable, and None where the dimension does not
apply (no targets) and the text is empty.
"""

from __future__ import annotations

import re

from ..vocab import AIRCRAFT_TYPES, CAPTION_DIMENSIONS, SHIP_CLASSES, TARGET_CLASSES
from . import knowledge


def _words(table: dict[str, str]) -> list[tuple[str, re.Pattern]]:
    return [(name, re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE)) for name, pattern in table.items()]


TARGET_PATTERNS = {
    "ship": r"ships?|vessels?|boats?|tankers?",
    "aircraft": r"aircraft|airplanes?|aeroplanes?|planes?|jets?|airliners?",
    "storage tank": r"storage tanks?|oil tanks?|tanks?",
    "vehicle": r"vehicles?|cars?|trucks?",
}
LANDCOVER_WORDS = _words({
    "water": r"water|rivers?|sea|lakes?|ocean",
    "urban": r"urban|residential|built-up|city|town",
    "industrial": r"industrial|industry|factor(?:y|ies)",
    "farmland": r"farmland|farms?|agricultur\w*|cropland|fields?|crops?",
    "forest": r"forests?|woodland|woods?|trees?",
    "bare": r"bare|barren|soil|rock|sand",
    "road": r"roads?|highways?|streets?",
    "airport": r"airports?|runways?|airfields?|aprons?",
    "port": r"ports?|harbou?rs?|docks?|quays?",
})
TARGET_WORDS = _words(TARGET_PATTERNS)
TERRAIN_WORDS = _words({"plain": r"plains?|flat|lowlands?", "hilly": r"hills?|hilly|undulating",
                        "mountain": r"mountains?|mountainous"})
CELL_PATTERNS = {  # tried in this order at each position, so "top-left" wins over "top"
    "top-left": r"(?:top|upper)[- ]left|north-?west\w*",
    "top-right": r"(?:top|upper)[- ]right|north-?east\w*",
    "bottom-left": r"(?:bottom|lower)[- ]left|south-?west\w*",
    "bottom-right": r"(?:bottom|lower)[- ]right|south-?east\w*",
    "top": r"top|upper|north(?:ern)?",
    "bottom": r"bottom|lower|south(?:ern)?",
    "left": r"left|west(?:ern)?",
    "right": r"right|east(?:ern)?",
    "center": r"cent(?:er|re|ral)|middle",
}
CELL_REGEX = re.compile(
    "|".join(rf"\b(?P<c{i}>{p})\b" for i, p in enumerate(CELL_PATTERNS.values())), re.IGNORECASE)
DENSITY_WORDS = _words({"none": r"no|none|absent|without", "sparse": r"sparse|sparsely|scattered|few",
                        "moderate": r"moderate|moderately|medium", "dense": r"dense|densely|abundant|compact|prominent"})
ROAD_WORDS = _words({"none": r"no|none|absent|without", "minor": r"minor|narrow|small|thin|few",
                     "major": r"major|main|clear|prominent|highways?|dense"})
SPREAD_WORDS = _words({"single": r"single|isolated|lone|one", "clustered": r"cluster\w*|group\w*|concentrated",
                       "scattered": r"scatter\w*|dispersed|spread"})
WATER_KIND_WORDS = _words({"river": r"rivers?|streams?", "coast": r"coast\w*|sea|shore\w*|ocean",
                           "lake": r"lakes?|ponds?", "port basin": r"(?:port|harbou?r|dock) basins?"})
LABEL = re.compile(r"^\s*[A-Z][A-Za-z ]{2,28}:\s*")
"""A leading label such as "Water presence:", stripped before checking (its words are not claims)."""
WATER_WORD = re.compile(r"\b(?:water|rivers?|streams?|coast\w*|sea|lakes?|ponds?|basins?|ocean)\b", re.I)
NEGATION = re.compile(r"\b(?:no|none|not|absent|without)\b", re.IGNORECASE)
NUMBER_WORDS = {w: i for i, w in enumerate(
    "no one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER = r"\d+|a single|" + "|".join(NUMBER_WORDS)
_TARGET_ALT = "|".join(TARGET_PATTERNS.values())
COUNT_CLAIM = re.compile(rf"\b({_NUMBER})\s+(?:[a-z-]+\s+)?({_TARGET_ALT})\b", re.IGNORECASE)
LENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(?:m|metres|meters)\b", re.IGNORECASE)
SIZE_TOLERANCE = 0.15
"""A claimed length is right when within this fraction (plus one pixel) of the class's true length range."""
TYPE_ALIASES = {"A320/321": ("a320", "a321"), "Boeing737": ("boeing737", "b737"),
                "Boeing787": ("boeing787", "b787")}
"""Other spellings of target types (lower case, no spaces or hyphens); every type also matches itself."""
KNOWN_TYPES = tuple(AIRCRAFT_TYPES) + tuple(SHIP_CLASSES)


def mentions(text: str, table: list[tuple[str, re.Pattern]]) -> list[str]:
    """The names in `table` whose pattern occurs in text, in order of first occurrence."""
    hits = [(m.start(), name) for name, p in table for m in p.finditer(text)]
    return list(dict.fromkeys(name for _, name in sorted(hits)))


def first_mention(text: str, table: list[tuple[str, re.Pattern]]) -> str | None:
    """The name whose pattern occurs earliest in text, or None."""
    found = mentions(text, table)
    return found[0] if found else None


def mentioned_cells(text: str) -> list[str]:
    """The 3x3 grid cells named in text, in order of first occurrence."""
    names = list(CELL_PATTERNS)
    return list(dict.fromkeys(names[int(m.lastgroup[1:])] for m in CELL_REGEX.finditer(text)))


def clauses(text: str) -> list[str]:
    """Text split into clauses at semicolons and sentence ends."""
    return [c for c in re.split(r";|\.\s|\n", text) if c.strip()]


def _number(word: str) -> int:
    word = word.lower()
    return int(word) if word.isdigit() else 1 if word == "a single" else NUMBER_WORDS[word]


def claimed_counts(text: str) -> dict[str, int]:
    """Counts claimed in text ('3 ships', 'no aircraft'), summed per target class."""
    counts: dict[str, int] = {}
    for m in COUNT_CLAIM.finditer(text):
        cls = first_mention(m.group(2), TARGET_WORDS)
        counts[cls] = counts.get(cls, 0) + _number(m.group(1))
    return counts


def class_claims(text: str, table, present: list[str], extract) -> list[tuple[str, object]]:
    """(class, value) claims per clause: the one class the clause names (or the only class present)."""
    out = []
    for clause in clauses(text):
        named = mentions(clause, table)
        cls = named[0] if len(named) == 1 else present[0] if not named and len(present) == 1 else None
        value = extract(clause)
        if cls and value:
            out.append((cls, value))
    return out


def _norm(s: str) -> str:
    return re.sub(r"[\s\-/]", "", s.lower())


def check_terrain(text, facts):
    """The terrain classes named are exactly the tile's terrain (not checkable when it is unknown)."""
    if facts["terrain"] == "unknown":
        found = mentions(text, TERRAIN_WORDS)
        return (False, f"terrain claimed {found}, facts unknown") if found else (None, "terrain unknown")
    found = set(mentions(text, TERRAIN_WORDS))
    return found == {facts["terrain"]}, f"terrain claimed {sorted(found)}, facts {facts['terrain']}"


def check_functionality(text, facts):
    """The first land cover named is the tile's main landform."""
    main = first_mention(text, LANDCOVER_WORDS)
    return main == facts["main_landform"], f"main landform claimed {main}, facts {facts['main_landform']}"


def check_distribution(text, facts):
    """Every (land cover, 3x3 cell) claim matches the cell's main class."""
    claims = class_claims(text, LANDCOVER_WORDS, [], mentioned_cells)
    wrong = [(c, cell) for c, cells in claims for cell in cells if facts["regional_landform"][cell] != c]
    if not claims:
        return False, "no (land cover, cell) claim found"
    return not wrong, f"cells claimed for the wrong class: {wrong}" if wrong else "all cells agree"


def check_layout(text, facts):
    """The land covers named are exactly those present."""
    found = set(mentions(text, LANDCOVER_WORDS))
    return found == set(facts["landforms_present"]), f"classes {sorted(found)}, facts {facts['landforms_present']}"


def check_boundary(text, facts):
    """The land covers named at boundaries are present."""
    found = mentions(text, LANDCOVER_WORDS)
    extra = set(found) - set(facts["landforms_present"])
    return bool(found) and not extra, f"classes {found}, not present: {sorted(extra)}"


def check_buildings(text, facts):
    """The building density named is the tile's."""
    claim, truth = first_mention(text, DENSITY_WORDS), knowledge.building_density(facts)
    return claim == truth, f"building density claimed {claim}, facts {truth}"


def check_roads(text, facts):
    """The road level named is the tile's."""
    claim, truth = first_mention(text, ROAD_WORDS), knowledge.road_level(facts)
    if truth == "unknown":
        return None, "roads not measured"
    return claim == truth, f"roads claimed {claim}, facts {truth}"


def water_claim(text: str) -> bool | None:
    """True when text says water is there, False when it says none is (a negation before any water word)."""
    negated, water = NEGATION.search(text), WATER_WORD.search(text)
    if negated and (not water or negated.start() < water.start()):
        return False
    return True if water else None


def check_water(text, facts):
    """Water presence agrees, and every water kind named is there."""
    present = water_claim(text)
    if facts["water_present"] is None:
        return None, "water unknown: not checkable"
    if present is None:
        return False, "no claim about water"
    if present != facts["water_present"]:
        return False, f"water present claimed {present}, facts {facts['water_present']}"
    kinds = set(mentions(NEGATION.split(text)[0], WATER_KIND_WORDS)) if present else set()
    extra = kinds - set(facts["water_kinds"])
    return not extra, f"water kinds not in the facts: {sorted(extra)}" if extra else "water agrees"


def check_count(text, facts):
    """Every count claimed is right and every class present is counted."""
    claimed = claimed_counts(text)
    truth = {c: facts["counts"].get(c, 0) for c in TARGET_CLASSES}
    wrong = {c: n for c, n in claimed.items() if truth[c] != n}
    missing = [c for c, n in truth.items() if n and c not in claimed]
    if not claimed and not any(truth.values()) and NEGATION.search(text):
        return True, "no targets claimed, none present"
    return not wrong and not missing, f"counts claimed {claimed}, facts {truth}"


def check_location(text, facts):
    """Each target class is placed in exactly the cells its targets occupy."""
    groups = knowledge.targets_by_class(facts)
    claims = dict(class_claims(text, TARGET_WORDS, list(groups), mentioned_cells))
    wrong = {c: cells for c, cells in claims.items()
             if c not in groups or set(cells) != set(knowledge.target_cells(groups[c]))}
    missing = [c for c in groups if c not in claims]
    return not wrong and not missing, f"cells claimed {claims}, wrong {wrong}, missing {missing}"


def check_feature(text, facts):
    """The target classes described are exactly those present."""
    found = set(mentions(text, TARGET_WORDS))
    truth = set(knowledge.targets_by_class(facts))
    return found == truth, f"classes described {sorted(found)}, facts {sorted(truth)}"


def check_size(text, facts):
    """Every length claimed lies within its class's true length range (with tolerance)."""
    groups = knowledge.targets_by_class(facts)
    lengths = lambda clause: [float(x) for x in LENGTH.findall(clause)]  # noqa: E731
    claims = class_claims(text, TARGET_WORDS, list(groups), lengths)
    res = facts["resolution_m"]
    wrong = []
    for cls, values in claims:
        if cls not in groups:
            wrong.append((cls, values))
            continue
        known = [t["length_m"] for t in groups[cls] if t["length_m"] is not None]
        if not known:
            wrong.append((cls, values))  # a length claimed where no source knows one
            continue
        lo = min(known) * (1 - SIZE_TOLERANCE) - (res or 0)
        hi = max(known) * (1 + SIZE_TOLERANCE) + (res or 0)
        wrong += [(cls, v) for v in values if not lo <= v <= hi]
    sized = [c for c in groups if any(t["length_m"] is not None for t in groups[c])]
    if not sized and not claims:
        return None, "sizes unknown (no pixel spacing)"
    missing = [c for c in sized if c not in {c for c, _ in claims}]
    return not wrong and not missing, f"lengths out of range {wrong}, classes without a size {missing}"


def check_category(text, facts):
    """The target types named are exactly the tile's types."""
    norm = _norm(text)
    truth = {t["type"] for t in facts["targets"]}
    said = {t for t in set(KNOWN_TYPES) | truth if any(a in norm for a in TYPE_ALIASES.get(t, (_norm(t),)))}
    return said == truth, f"types named {sorted(said)}, facts {sorted(truth)}"


def check_target_distribution(text, facts):
    """The spread named (single / clustered / scattered) is the tile's."""
    claim, truth = first_mention(text, SPREAD_WORDS), knowledge.target_distribution(facts)
    return claim == truth, f"distribution claimed {claim}, facts {truth}"


def check_region(text, facts):
    """The land covers named around the targets are those of their cells."""
    found, truth = set(mentions(text, LANDCOVER_WORDS)), set(knowledge.target_region(facts))
    return found == truth, f"land cover around targets claimed {sorted(found)}, facts {sorted(truth)}"


def check_environment(text, facts):
    """The city or country is named and any coastal / inland claim agrees."""
    lower = text.lower()
    if facts["city"] == "unknown" and facts["country"] == "unknown":
        return (None, "location unknown") if "unknown" in lower else (False, "names a place for an unplaced tile")
    if facts["city"].lower() not in lower and facts["country"].lower() not in lower:
        return False, f"neither {facts['city']} nor {facts['country']} named"
    coast_claim = re.search(r"\bcoast(?:al)?\b|\bseaside\b", lower)
    inland_claim = re.search(r"\binland\b", lower)
    if facts["coastal"] is not None and ((coast_claim and not facts["coastal"]) or (inland_claim and facts["coastal"])):
        return False, f"coastal claim contradicts coastal={facts['coastal']}"
    return True, "place agrees"


CHECKS = {
    "Terrain": check_terrain, "Functionality": check_functionality, "Distribution": check_distribution,
    "Layout": check_layout, "Boundary": check_boundary, "Buildings": check_buildings, "Roads": check_roads,
    "Water": check_water, "Count": check_count, "Location": check_location, "Feature": check_feature,
    "Size": check_size, "Category": check_category, "TargetDistribution": check_target_distribution,
    "Region": check_region, "Environment": check_environment,
}
ALWAYS_APPLY = frozenset(CAPTION_DIMENSIONS[:8] + ("Count",))
"""Dimensions every tile has; the other target dimensions apply only to tiles with targets."""


def applies(dim: str, facts: dict) -> bool:
    """Whether a tile with these facts should fill `dim`."""
    return dim in ALWAYS_APPLY or bool(facts["targets"])


def check_dimension(dim: str, text: str | None, facts: dict) -> tuple[bool | None, str]:
    """(ok, reason) for one dimension's text against the facts."""
    if not applies(dim, facts):
        if not text or NEGATION.search(text):
            return None, "does not apply"
        return False, "describes targets where there are none"
    if not text:
        return False, "missing"
    return CHECKS[dim](LABEL.sub("", text, count=1), facts)


def check_caption(dims: dict[str, str | None], facts: dict, only=CAPTION_DIMENSIONS) -> dict[str, bool | None]:
    """{dimension: ok} for a caption's 16 dimensions (or for the dimensions in `only`)."""
    return {d: check_dimension(d, dims.get(d), facts)[0] for d in CAPTION_DIMENSIONS if d in only}


def accuracy(records: list[dict]) -> dict[str, float | None]:
    """Per-dimension fraction of checked claims that agree with the facts (None where nothing was checked)."""
    out = {}
    for d in CAPTION_DIMENSIONS:
        marks = [r["factcheck"][d] for r in records if r.get("factcheck") and r["factcheck"].get(d) is not None]
        out[d] = sum(marks) / len(marks) if marks else None
    return out
