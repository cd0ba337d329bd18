"""Validation of an LLM's JSON answer and the captions-JSONL record."""

import json

import pytest

from klip_lib.hcot.schema import (
    RECORD_KEYS,
    MalformedOutput,
    caption_text,
    make_record,
    parse_dimensions,
    prompt_hash,
)
from klip_lib.vocab import CAPTION_DIMENSIONS


def test_parse_accepts_fenced_json_and_fills_missing_with_none():
    dims = parse_dimensions('Here you go:\n```json\n{"Terrain": "The terrain is plain", "Count": null}\n```')
    assert dims["Terrain"] == "The terrain is plain" and dims["Count"] is None and len(dims) == 16


def test_parse_takes_dimension_keys_in_any_letter_case():
    dims = parse_dimensions('{"terrain": "The terrain is plain", "COUNT": "Count: 3 ships"}')
    assert dims["Terrain"] == "The terrain is plain" and dims["Count"] == "Count: 3 ships"


@pytest.mark.parametrize("raw, message", [
    ("Sure! The terrain is plain.", "no JSON object"),
    ('{"Terrain": "The terrain is', "no JSON object"),
    ('{"Terrain": "plain",}', "invalid JSON"),
    ('{"Terrain": "plain", "Colour": "grey"}', "unknown keys ['Colour']"),
    ('{"Count": 3}', "Count is a int"),
    ('{"Terrain": ""}', "fills no dimension"),
    ('{"Terrain": "plain", "terrain": "hilly"}', "Terrain is given twice"),
])
def test_parse_rejects_malformed(raw, message):
    with pytest.raises(MalformedOutput, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_dimensions(raw)


def test_record_has_contract_keys():
    dims = {"Terrain": "The terrain is plain", "Water": "Water presence: none visible."}
    rec = make_record("t1", dims, level="L5", backend="template", model="m", prompt="p",
                      factcheck={d: None for d in CAPTION_DIMENSIONS})
    assert tuple(rec) == RECORD_KEYS and list(rec)[:17] == ["tile_id", *CAPTION_DIMENSIONS]
    assert rec["text"] == "The terrain is plain. Water presence: none visible."
    assert rec["prompt_hash"] == prompt_hash("p") and len(rec["prompt_hash"]) == 16
    assert json.loads(json.dumps(rec)) == rec
    with pytest.raises(ValueError, match="unknown level 'L9'"):
        make_record("t1", dims, level="L9", backend="b", model="m", prompt="p", factcheck={})
    assert caption_text({}) == ""
