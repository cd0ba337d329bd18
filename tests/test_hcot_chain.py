"""The HCoT knowledge chain: what each level knows, the prompt it builds, and L5 calibration."""

from hcot_fakes import random_facts, rotterdam_facts

from klip_lib.hcot.chain import build_chain, level0, level1_geoscience, level4_instances, level5_calibrate
from klip_lib.hcot.prompts import messages
from klip_lib.hcot.realise import realise
from klip_lib.vocab import CAPTION_DIMENSIONS


def test_levels_add_their_own_knowledge():
    facts = rotterdam_facts()
    chain = build_chain(facts, "L4")
    assert [lv.name for lv in chain] == ["L1", "L2", "L3", "L4"]
    assert "Rotterdam" in chain[0].text and chain[0].facts["coastal"] is True
    assert chain[1].facts["main_landform"] == "urban" and chain[1].facts["buildings"] == "dense"
    assert "5.6 cm" in chain[2].text and any("water is dark" in r for r in chain[2].facts["rules"])
    assert chain[3].facts["counts"]["ship"] == 3
    assert chain[3].facts["classes"]["ship"]["length_m"] == [40.0, 250.0]
    assert "10x6 px at 10.0 m spacing, 152 m long" in chain[3].text


def test_l0_knows_metadata_only():
    facts = rotterdam_facts()
    l0 = level0(facts)
    assert set(l0.facts) == {"platform", "band", "polarizations", "resolution_m", "width", "height"}
    prompt = messages(build_chain(facts, "L0"))[1]["content"]
    assert "Rotterdam" not in prompt and "ship" not in prompt.split("What is known about the tile:")[1]
    assert "Rotterdam" in messages(build_chain(facts, "L5"))[1]["content"]


def test_prompts_of_different_tiles_share_everything_before_the_knowledge():
    a, b = (messages(build_chain(f, "L5"))[1]["content"] for f in (rotterdam_facts(), random_facts(3)))
    shared = a.index("What is known about the tile:") + len("What is known about the tile:")
    assert a[:shared] == b[:shared] and a != b  # a server's prefix cache covers the instructions and template


def test_chain_levels_are_cumulative():
    facts = random_facts(5)
    assert [lv.name for lv in build_chain(facts, "L2")] == ["L1", "L2"]
    assert [lv.name for lv in build_chain(facts, "L5")] == ["L1", "L2", "L3", "L4"]
    assert level1_geoscience(facts).facts["terrain"] == facts["terrain"]


def test_l4_without_targets():
    facts = rotterdam_facts()
    facts["targets"], facts["counts"] = [], {c: 0 for c in facts["counts"]}
    l4 = level4_instances(facts)
    assert l4.facts["distribution"] is None and "no ships" in l4.text


def test_l5_catches_and_repairs_planted_contradiction():
    facts = random_facts(11)
    facts["targets"] = [dict(t, **{"class": "aircraft", "type": "A330", "length_m": 63.7}) for t in
                        random_facts(2)["targets"][:1] * 3]
    for i, t in enumerate(facts["targets"]):
        t["id"] = i
    facts["counts"] = {"ship": 0, "aircraft": 3, "storage tank": 0, "vehicle": 0}
    draft = realise(facts, seed=0)
    draft["Count"] = "Count: 6 aircraft"
    dims, l5 = level5_calibrate(draft, facts)
    assert l5.facts["draft_factcheck"]["Count"] is False
    assert len(l5.facts["changes"]) == 1 and l5.facts["changes"][0].startswith("Count:")
    assert "6 aircraft" in l5.facts["changes"][0] and "repaired" in l5.facts["changes"][0]
    assert ("3 aircraft" in dims["Count"] or "three aircraft" in dims["Count"]) and "6" not in dims["Count"]
    assert {d: dims[d] for d in CAPTION_DIMENSIONS if d != "Count"} == \
        {d: draft[d] for d in CAPTION_DIMENSIONS if d != "Count"}


def test_l5_drop_mode_and_malformed_draft():
    facts = rotterdam_facts()
    draft = realise(facts, seed=1)
    draft["Water"] = "Water presence: none visible"
    dims, l5 = level5_calibrate(draft, facts, mode="drop")
    assert dims["Water"] is None and "dropped" in l5.facts["changes"][0]
    dims, l5 = level5_calibrate(None, facts)
    assert all(dims[d] for d in CAPTION_DIMENSIONS) and len(l5.facts["changes"]) == 16
