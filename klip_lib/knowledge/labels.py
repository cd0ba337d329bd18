"""Real labelled tiles for scoring facts and captions per dimension, found in any folder by their file pattern:

- Sen1Floods11: `<Country>_<id>_S1Hand.tif` (VV, VH sigma0 dB) beside `..._LabelHand.tif` (-1 nodata, 0 land,
  1 water) -> water present per tile, and the country (the file name starts with it);
- HRSID: `<scene>.png` beside `<scene>_instance_id_RGB.png` (one colour per ship) -> ship count and the 3x3
  cells holding ships per tile;
- SAR-ACD: chips (`.jpg`/`.png`) in folders named after its aircraft classes -> aircraft present (every chip
  shows one aircraft; there are no negative chips, so this is recall).

Large rasters are cut into `tile_px` tiles (the workbench's own tile size), each with the part of the label
inside it, so that the number of scored tiles grows without inventing a label. Tiles of one scene are not
independent: each item records its scene. A pair that cannot be read or whose label does not match its image
is one line in the problems, naming the file; the other pairs are still used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..vocab import GRID_CELLS, grid_cell
from .facts import TileInfo

SAR_ACD_CLASSES = ("A220", "A320321", "A330", "ARJ21", "Boeing737", "Boeing787")
HRSID_MIN_PX = 20  # an instance colour with fewer pixels (in a tile) is a mask edge artefact, not a ship
DIMENSIONS = ("water present", "location: country", "ship count (exact)", "ships in 3x3 cell", "aircraft present")
"""The dimensions real labels can score, in table order."""


@dataclass
class LabelledTile:
    """One tile with its bands (dB), what the index would know about it, and the label's truth."""

    item_id: str
    dataset: str  # sen1floods11 / hrsid / sar_acd
    scene: str  # the file the tile was cut from (tiles of one scene are correlated)
    bands: dict[str, np.ndarray]
    info: TileInfo
    truth: dict = field(default_factory=dict)  # water_present / country / ship_count, ship_cells / aircraft_present


def chip_db(path: Path) -> np.ndarray:
    """An 8-bit chip's digital numbers as relative dB (20 log10 DN, 0 -> NaN), as the importer converts chips."""
    from PIL import Image

    dn = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return np.where(dn > 0, 20 * np.log10(np.maximum(dn, 1)), np.nan).astype(np.float32)


def windows(height: int, width: int, tile_px: int) -> list[tuple[int, int, int, int]]:
    """(row, col, h, w) of the whole tile_px x tile_px windows of an image (the image itself when smaller;
    a remainder strip narrower than a tile is left out)."""
    if tile_px <= 0 or (height <= tile_px and width <= tile_px):
        return [(0, 0, height, width)]
    return [(r, c, tile_px, tile_px) for r in range(0, height - tile_px + 1, tile_px)
            for c in range(0, width - tile_px + 1, tile_px)]


def sen1floods11(folder: Path, tile_px: int, min_water_fraction: float) -> tuple[list[LabelledTile], list[str]]:
    import rasterio
    from rasterio.warp import transform as warp

    items, problems = [], []
    for s1 in sorted(folder.rglob("*_S1Hand.tif")):
        label_path = s1.with_name(s1.name.replace("_S1Hand", "_LabelHand"))
        try:
            with rasterio.open(s1) as src:
                data, tr, crs = src.read().astype(np.float32), src.transform, src.crs
            with rasterio.open(label_path) as src:
                label = src.read(1)
        except Exception as e:  # rasterio's errors, a missing label: this pair only
            problems.append(f"{label_path if s1.exists() and not label_path.exists() else s1}: not readable as a "
                            f"Sen1Floods11 pair ({str(e).splitlines()[0][:120]})")
            continue
        if label.shape != data.shape[1:] or len(data) < 2:
            problems.append(f"{label_path}: label {label.shape} does not match its image {s1.name} "
                            f"{data.shape[1:]} with VV and VH bands")
            continue
        country = s1.name.split("_")[0]
        for r, c, h, w in windows(*label.shape, tile_px):
            lab = label[r:r + h, c:c + w]
            valid = lab >= 0
            if valid.mean() < 0.5:  # mostly nodata in the label: nothing to score against
                continue
            xs, ys = tr @ (c + w / 2, r + h / 2)
            lon, lat = warp(crs, "EPSG:4326", [xs], [ys])
            res = abs(tr.a) * (111320.0 * np.cos(np.radians(lat[0])) if crs.is_geographic else 1.0)
            vv, vh = data[0, r:r + h, c:c + w], data[1, r:r + h, c:c + w]
            info = TileInfo(f"{s1.stem}_{r}_{c}", scene_id=s1.stem, lon=lon[0], lat=lat[0], platform="sentinel1",
                            band="C", polarizations=["VV", "VH"], resolution_m=round(float(res), 2))
            truth = {"water_present": bool((lab[valid] == 1).mean() >= min_water_fraction), "country": country}
            items.append(LabelledTile(info.tile_id, "sen1floods11", s1.stem, {"VV": vv, "VH": vh}, info, truth))
    return items, problems


def _instances(mask: np.ndarray) -> np.ndarray:
    """An RGB instance mask as one integer id per pixel (0 background)."""
    return mask.reshape(*mask.shape[:2], 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])


def hrsid(folder: Path, tile_px: int) -> tuple[list[LabelledTile], list[str]]:
    from PIL import Image

    items, problems = [], []
    for png in sorted(p for p in folder.rglob("*.png") if "_instance_" not in p.name):
        mask_path = png.with_name(f"{png.stem}_instance_id_RGB.png")
        if not mask_path.exists():
            continue  # an image without an instance mask is not an HRSID pair
        try:
            db = chip_db(png)
            ids = _instances(np.asarray(Image.open(mask_path).convert("RGB")))
        except Exception as e:
            problems.append(f"{png}: not readable as an HRSID pair ({str(e).splitlines()[0][:120]})")
            continue
        if ids.shape != db.shape:
            problems.append(f"{mask_path}: mask {ids.shape} does not match its image {png.name} {db.shape}")
            continue
        for r, c, h, w in windows(*db.shape, tile_px):
            part = ids[r:r + h, c:c + w]
            found, counts = np.unique(part, return_counts=True)
            cells = set()
            n = 0
            for k, cnt in zip(found, counts):
                if k == 0 or cnt < HRSID_MIN_PX:
                    continue
                ys, xs = np.nonzero(part == k)
                cells.add(grid_cell(xs.mean(), ys.mean(), w, h))
                n += 1
            info = TileInfo(f"{png.stem}_{r}_{c}", scene_id=png.stem, polarizations=["HH"], calibrated=False)
            items.append(LabelledTile(info.tile_id, "hrsid", png.stem, {"HH": db[r:r + h, c:c + w]}, info,
                                      {"ship_count": n, "ship_cells": sorted(cells, key=GRID_CELLS.index)}))
    return items, problems


def sar_acd(folder: Path) -> tuple[list[LabelledTile], list[str]]:
    items, problems = [], []
    for cls in sorted(p for p in folder.rglob("*") if p.is_dir() and p.name in SAR_ACD_CLASSES):
        for chip in sorted(p for p in cls.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
            try:
                db = chip_db(chip)
            except Exception as e:
                problems.append(f"{chip}: not a readable SAR-ACD chip ({str(e).splitlines()[0][:120]})")
                continue
            info = TileInfo(f"{cls.name}_{chip.stem}", scene_id=f"{cls.name}/{chip.name}", polarizations=["HH"],
                            resolution_m=1.0, calibrated=False, platform="gaofen3", band="C")
            items.append(LabelledTile(info.tile_id, "sar_acd", info.scene_id, {"HH": db}, info,
                                      {"aircraft_present": True}))
    return items, problems


def find_labelled(folder: str | Path, tile_px: int = 128, min_water_fraction: float = 0.01
                  ) -> tuple[list[LabelledTile], list[str]]:
    """Every labelled tile under `folder` (any depth) and one line per pair that could not be used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of labelled SAR data")
    items, problems = [], []
    for found, bad in (sen1floods11(folder, tile_px, min_water_fraction), hrsid(folder, tile_px), sar_acd(folder)):
        items += found
        problems += bad
    return items, problems


def score(truth: dict, claims: dict) -> dict[str, list[int]]:
    """{dimension: [1/0 per scored item]} for one tile: a claim agrees with its label (1) or not (0; a missing or
    unknown claim counts as wrong). 'ships in 3x3 cell' gives one mark per cell (present/absent)."""
    out: dict[str, list[int]] = {}
    if "water_present" in truth:
        out["water present"] = [int(claims.get("water_present") == truth["water_present"])]
    if "country" in truth:
        said = claims.get("country")
        out["location: country"] = [int(bool(said) and said.lower() == truth["country"].lower())]
    if "ship_count" in truth:
        out["ship count (exact)"] = [int(claims.get("ship_count") == truth["ship_count"])]
        said = claims.get("ship_cells")
        out["ships in 3x3 cell"] = [int(said is not None and (c in said) == (c in truth["ship_cells"]))
                                    for c in GRID_CELLS]
    if "aircraft_present" in truth:
        out["aircraft present"] = [int(claims.get("aircraft_present") == truth["aircraft_present"])]
    return out


def facts_claims(facts: dict, truth: dict) -> dict:
    """What a facts record claims on the labelled dimensions (the knowledge layer's own row)."""
    country = facts.get("country")
    return {"water_present": facts.get("water_present"),
            "country": country if country and country != "unknown" else None,
            "ship_count": facts["counts"].get("ship", 0),
            "ship_cells": {t["grid_cell"] for t in facts["targets"] if t["class"] == "ship"},
            "aircraft_present": facts["counts"].get("aircraft", 0) > 0}
