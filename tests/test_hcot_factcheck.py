"""Fact-checking: the template realiser and the checker agree on every dimension, and wrong claims are caught."""

import pytest
from hcot_fakes import random_facts, rotterdam_facts

from klip_lib.hcot.factcheck import accuracy, check_caption, check_dimension, claimed_counts, mentioned_cells
from klip_lib.hcot.realise import realise
from klip_lib.vocab import CAPTION_DIMENSIONS


def test_template_is_fully_accurate_on_random_tiles():
    records = []
    for i in range(200):
        facts = random_facts(i)
        dims = realise(facts, seed=i % 3)
        records.append({"factcheck": check_caption(dims, facts)})
    acc = accuracy(records)
    assert acc == {d: 1.0 for d in CAPTION_DIMENSIONS}


def test_template_is_deterministic_and_varied():
    facts = rotterdam_facts()
    assert realise(facts, 0) == realise(facts, 0)
    phrasings = {d: {realise(facts, s)[d] for s in range(20)} for d in CAPTION_DIMENSIONS}
    assert sum(len(v) > 1 for v in phrasings.values()) >= 12
    assert realise(facts, 0)["Water"].startswith("Water presence: ")


def test_target_dimensions_are_null_without_targets():
    facts = random_facts(0)
    facts["targets"], facts["counts"] = [], {c: 0 for c in facts["counts"]}
    dims = realise(facts)
    assert dims["Location"] is None and dims["Count"].startswith("Count: no ")
    check = check_caption(dims, facts)
    assert check["Location"] is None and check["Count"] is True
    assert check_dimension("Location", "Location: the ships are in the top", facts)[0] is False
    assert check_dimension("Location", "Location: no targets", facts)[0] is None


WRONG = [
    ("Terrain", "The terrain is classified as mountainous area"),
    ("Functionality", "The area functionality is described as farmland"),
    ("Distribution", "Functional distribution: water occupies the top-left"),
    ("Layout", "Spatial layout: a mix of urban and forest areas"),
    ("Boundary", "Boundary features: gradual transitions between forest and bare areas"),
    ("Buildings", "Building presence: no buildings visible"),
    ("Roads", "Road presence: none visible"),
    ("Water", "Water presence: none visible"),
    ("Water", "Water presence: a lake"),
    ("Count", "Count: 6 ships"),
    ("Count", "Count: 3 ships and 2 aircraft"),
    ("Location", "Location: the ships are in the bottom-left"),
    ("Feature", "Feature: aircraft show bright crosses"),
    ("Size", "Size: the ships range from 40 m to 900 m"),
    ("Category", "Category: ships: cargo ship and A330"),
    ("TargetDistribution", "Target distribution: the targets are clustered together"),
    ("Region", "Region: the targets lie in forest areas"),
    ("Environment", "Environment: near Paris, France"),
    ("Environment", "Environment: near Rotterdam, an inland site"),
    ("Terrain", None),
    ("Water", "Water presence: 10.0 m pixels"),
]
RIGHT = [
    ("Terrain", "Terrain: flat plain"),
    ("Count", "There are 3 ships."),
    ("Count", "two cargo ships and one tanker"),
    ("Water", "Water presence: a river and port basins, no lake"),
    ("Location", "Ships in the upper right and the centre"),
    ("Size", "Ships between 45 and 240 m long"),
    ("Category", "fishing vessel, Cargo Ship and tanker"),
    ("Environment", "Port of Rotterdam, a coastal city"),
]


@pytest.mark.parametrize("dim, text", WRONG)
def test_wrong_claims_are_caught(dim, text):
    ok, reason = check_dimension(dim, text, rotterdam_facts())
    assert ok is False, reason


@pytest.mark.parametrize("dim, text", RIGHT)
def test_paraphrased_right_claims_pass(dim, text):
    ok, reason = check_dimension(dim, text, rotterdam_facts())
    assert ok is True, reason


def test_parsers():
    assert claimed_counts("3 ships, no aircraft and a single vehicle") == {"ship": 3, "aircraft": 0, "vehicle": 1}
    assert mentioned_cells("upper-left, left, center and bottom right") == ["top-left", "left", "center",
                                                                              "bottom-right"]
