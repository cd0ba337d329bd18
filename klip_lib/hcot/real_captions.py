"""The released FUSAR-GEOVL captions (`fusar_geovl_captions/caption_part1.json`) read into our schema.

Each object holds an `image_id` and the eight landform dimensions; the target dimensions are null. The fill
report counts, per caption, the dimensions that say something, and per dimension how often the fact-checker's
parsers read a claim from it (the claims we could check against ground truth if the images were public).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from ..vocab import CAPTION_DIMENSIONS, LANDFORM_DIMENSIONS
from . import factcheck as fc
from .schema import make_record

CAPTIONS_FILE = "fusar_geovl_captions/caption_part1.json"
EMPTY = re.compile(r"^\s*(?:n/?a|none|null|unknown|-)?\s*\.?\s*$", re.IGNORECASE)
"""A value that fills nothing (empty or a placeholder)."""

CLAIM_READERS = {
    "Terrain": lambda t: sorted(fc.mentions(t, fc.TERRAIN_WORDS)) or None,
    "Functionality": lambda t: fc.first_mention(t, fc.LANDCOVER_WORDS),
    "Distribution": lambda t: fc.class_claims(t, fc.LANDCOVER_WORDS, [], fc.mentioned_cells) or None,
    "Layout": lambda t: fc.mentions(t, fc.LANDCOVER_WORDS) or None,
    "Boundary": lambda t: fc.mentions(t, fc.LANDCOVER_WORDS) or None,
    "Buildings": lambda t: fc.first_mention(t, fc.DENSITY_WORDS),
    "Roads": lambda t: fc.first_mention(t, fc.ROAD_WORDS),
    "Water": fc.water_claim,
}
"""Per landform dimension, the claim the fact-checker's parsers read from a text (None: nothing checkable)."""


def load_real_captions(path: str | os.PathLike) -> list[dict]:
    """The released captions as captions-JSONL records (tile_id `fusar_geovl_<image_id>`, level L5).

    `path` is the caption JSON itself or the real-data folder that holds `fusar_geovl_captions/`.
    """
    path = Path(path)
    path = path / CAPTIONS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no released captions here; pass the real-data folder "
                                f"(../shared/data/real) or the caption JSON file")
    try:
        items = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({str(e).splitlines()[0][:100]}); expected a JSON list of "
                         "caption objects") from None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of caption objects, got {type(items).__name__}")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "image_id" not in item:
            raise ValueError(f"{path}: caption object {i} has no image_id; each object needs an image_id and "
                             "the landform dimensions")
        dims = {d: item.get(d) if isinstance(item.get(d), str) and not EMPTY.match(item[d]) else None
                for d in CAPTION_DIMENSIONS}
        record = make_record(f"fusar_geovl_{item['image_id']}", dims, level="L5", backend="fusar-geovl",
                             model="released", prompt="", factcheck={d: None for d in CAPTION_DIMENSIONS})
        record["prompt_hash"] = None
        records.append(record)
    return records


def fill_report(records: list[dict]) -> dict:
    """How many dimensions each caption fills (a histogram), and per landform dimension how many captions
    fill it and how many give a claim the fact-checker can read."""
    filled = Counter(sum(bool(r[d]) for d in CAPTION_DIMENSIONS) for r in records)
    per_dim = {d: sum(bool(r[d]) for r in records) for d in LANDFORM_DIMENSIONS}
    readable = {d: sum(bool(r[d]) and CLAIM_READERS[d](fc.LABEL.sub("", r[d], count=1)) is not None
                       for r in records) for d in LANDFORM_DIMENSIONS}
    return {"captions": len(records), "dimensions_filled": dict(sorted(filled.items())),
            "filled_per_dimension": per_dim, "checkable_per_dimension": readable}
