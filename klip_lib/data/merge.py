"""One dataset from two: the tiles of one dataset folder (tiles/, labels/, index.parquet, as `simulate_dataset` and
`import_folder` write them) moved into another, so that real tiles can be pretrained on mixed with simulated ones."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def add_tiles(folder: str | os.PathLike, other: str | os.PathLike) -> int:
    """Move every tile of dataset `other` (its raster, facts and land-cover files and its index rows) into dataset
    `folder`, whose index then lists both; returns how many tiles were added. A tile id found in both raises,
    naming it, before anything moves."""
    from .index import read_index, write_index

    folder, other = Path(folder), Path(other)
    have, add = read_index(folder / "index.parquet"), read_index(other / "index.parquet")
    clash = sorted(set(have["tile_id"]) & set(add["tile_id"]))
    if clash:
        raise InputError(f"{folder / 'index.parquet'}: tile ids {clash[:3]} are in both datasets; rename those "
                         f"files in the folder to import")
    for row in add.itertuples():
        for rel in (row.path, row.facts_path, row.landcover_path):
            if rel:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (other / rel).replace(folder / rel)
    write_index([*have.to_dict("records"), *add.to_dict("records")], folder / "index.parquet")
    return len(add)
