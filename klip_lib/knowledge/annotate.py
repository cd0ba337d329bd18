"""Facts records for the tiles of an imported index: `labels/<tile_id>.json` per tile and `facts_path` filled in
the index (rewritten atomically), so HCoT captions real tiles like simulated ones."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from .config import KnowledgeConfig
from .facts import TileInfo, tile_facts_from_file, write_facts


def tile_info(row) -> TileInfo:
    """What an index row (and its note) says about a tile."""
    geom = row.get("geometry")
    centre = geom.centroid if geom is not None and not geom.is_empty else None
    pols = [p for p in str(row.get("polarizations") or "").split(",") if p]
    return TileInfo(tile_id=row["tile_id"], scene_id=row.get("scene_id") or "",
                    lon=centre.x if centre is not None else None, lat=centre.y if centre is not None else None,
                    platform=row.get("platform") or "", band=row.get("band") or "", polarizations=pols,
                    resolution_m=row.get("resolution_m"), incidence_deg=row.get("incidence_deg"),
                    looks=row.get("looks"),
                    orbit_direction=next(iter(re.findall(r"orbit (ascending|descending)", str(row.get("note")))), ""),
                    calibrated="uncalibrated" not in str(row.get("note") or ""),
                    label=next(iter(re.findall(r"label: ([^;(]+?) \(", str(row.get("note") or ""))), ""))


def add_facts(index_path: str | os.PathLike, cfg: KnowledgeConfig | None = None,
              progress: bool = False) -> tuple[Path, list[str]]:
    """Write a facts record for every tile of the index that has none; returns (index, one line per tile whose
    facts could not be built: the tile keeps facts_path empty and is not captioned)."""
    from tqdm.auto import tqdm

    from ..data.index import INDEX_COLUMNS, read_index, write_index

    index_path = Path(index_path)
    df = read_index(index_path)
    rows, problems = df.to_dict("records"), []
    for row in tqdm(rows, desc="facts", unit="tile", disable=not progress):
        if row.get("facts_path"):
            continue
        for k, v in row.items():
            if isinstance(v, float) and math.isnan(v):
                row[k] = None
        try:
            facts = tile_facts_from_file(index_path.parent / row["path"], tile_info(row), cfg)
        except Exception as e:  # one tile's failure never loses the others
            problems.append(f"no facts for {row['path']}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            continue
        rel = f"labels/{row['tile_id']}.json"
        write_facts(facts, index_path.parent / rel)
        row["facts_path"] = rel
    write_index([{c: row.get(c) for c in INDEX_COLUMNS} for row in rows], index_path)
    return index_path, problems
