"""How often the knowledge layer's facts agree with real labels, per dimension:

- water present per tile, per 3x3 cell and per pixel: Sen1Floods11 hand labels (calibrated Sentinel-1 dB)
- ship count and the 3x3 cells holding ships: HRSID instance masks (8-bit quick-looks: relative dB)
- aircraft present: SAR-ACD chips (each shows one aircraft; Gaofen-3 1 m, 8-bit: relative dB)
- country: Sen1Floods11 chips, whose file names start with their country

`klip knowledge-accuracy` is not a command; run `python -m klip_lib.knowledge.accuracy [REAL_DIR]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..vocab import GRID_CELLS, grid_cell
from .config import KnowledgeConfig
from .facts import TileInfo, analyse_image, build_facts

HRSID_MIN_PX = 20  # an instance colour with fewer pixels is an edge artefact of the mask, not a ship


def _row(dimension: str, dataset: str, correct: int, n: int, how: str) -> dict:
    return {"dimension": dimension, "dataset": dataset, "n": int(n), "correct": int(correct),
            "accuracy": round(correct / n, 4) if n else None, "how": how}


def _chip_db(path: Path) -> np.ndarray:
    """An 8-bit chip's digital numbers as relative dB (20 log10 DN, 0 -> NaN), as the importer converts chips."""
    from PIL import Image

    dn = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    return np.where(dn > 0, 20 * np.log10(np.maximum(dn, 1)), np.nan).astype(np.float32)


def sen1floods11(folder: Path, cfg: KnowledgeConfig) -> list[dict]:
    import rasterio
    from rasterio.warp import transform as warp

    tiles = cells = cell_n = px = px_n = places = 0
    chips = sorted(folder.glob("*_S1Hand.tif"))
    for s1 in chips:
        with rasterio.open(s1) as src:
            vv, vh = src.read().astype(np.float32)
            b, crs = src.bounds, src.crs
        with rasterio.open(s1.with_name(s1.name.replace("_S1Hand", "_LabelHand"))) as src:
            label = src.read(1)
        xs, ys = warp(crs, "EPSG:4326", [(b.left + b.right) / 2], [(b.top + b.bottom) / 2])
        facts = build_facts({"VV": vv, "VH": vh}, TileInfo(s1.stem, lon=xs[0], lat=ys[0], platform="sentinel1",
                                                            band="C", resolution_m=10.0), cfg)
        valid, water = label >= 0, label == 1
        tiles += facts["water_present"] == (water[valid].mean() >= cfg.min_water_fraction)
        h, w = label.shape
        for i, cell in enumerate(GRID_CELLS):
            r, c = divmod(i, 3)
            part = (slice(r * h // 3, (r + 1) * h // 3), slice(c * w // 3, (c + 1) * w // 3))
            if valid[part].any():
                cell_n += 1
                cells += (facts["regional_landform"][cell] == "water") == (water[part][valid[part]].mean() > 0.5)
        lc = analyse_image({"VV": vv, "VH": vh}, 10.0, True, cfg)["landcover"]
        px += int(((lc == 0) == water)[valid].sum())
        px_n += int(valid.sum())
        places += facts["country"].lower() == s1.name.split("_")[0].lower()
    n = len(chips)
    return [_row("water present (tile)", "sen1floods11", tiles, n, "water share >= min_water_fraction"),
            _row("water main class (3x3 cell)", "sen1floods11", cells, cell_n, "cell majority water vs regional_landform"),
            _row("water (pixel)", "sen1floods11", px, px_n, "image water mask vs hand label"),
            _row("location: country", "sen1floods11", places, n, "reverse geocoding vs the chip's country in its name")]


def hrsid(folder: Path, cfg: KnowledgeConfig) -> list[dict]:
    from PIL import Image

    exact = cells = cell_n = 0
    errors = []
    scenes = sorted(p for p in folder.glob("*.png") if "_instance_" not in p.name)
    for png in scenes:
        mask = np.asarray(Image.open(png.with_name(f"{png.stem}_instance_id_RGB.png")).convert("RGB"))
        flat = mask.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        ids, counts = np.unique(flat, return_counts=True)
        h, w = mask.shape[:2]
        truth_cells = set()
        n_true = 0
        for k, cnt in zip(ids, counts):
            if k == 0 or cnt < HRSID_MIN_PX:
                continue
            ys, xs = np.divmod(np.flatnonzero(flat == k), w)
            truth_cells.add(grid_cell(xs.mean(), ys.mean(), w, h))
            n_true += 1
        facts = build_facts({"HH": _chip_db(png)}, TileInfo(png.stem, polarizations=["HH"], calibrated=False), cfg)
        found = facts["counts"]["ship"]
        exact += found == n_true
        errors.append(abs(found - n_true) / max(1, n_true))
        found_cells = {t["grid_cell"] for t in facts["targets"] if t["class"] == "ship"}
        cells += sum((c in truth_cells) == (c in found_cells) for c in GRID_CELLS)
        cell_n += len(GRID_CELLS)
    mape = f"mean relative count error {np.mean(errors):.0%}" if errors else ""
    return [_row("ship count (exact)", "hrsid", exact, len(scenes), mape),
            _row("ships in 3x3 cell (present/absent)", "hrsid", cells, cell_n, "cells with a ship centre vs CFAR ships")]


def sar_acd(folder: Path, cfg: KnowledgeConfig, per_class: int = 0) -> list[dict]:
    chips = []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(cls.glob("*.jpg"))
        chips += files[:per_class] if per_class else files
    hits = 0
    for jpg in chips:
        facts = build_facts({"HH": _chip_db(jpg)}, TileInfo(jpg.stem, polarizations=["HH"], resolution_m=1.0,
                                                             calibrated=False), cfg)
        hits += facts["counts"]["aircraft"] > 0
    return [_row("aircraft present", "sar_acd", hits, len(chips), "every chip shows one aircraft (1 m)")]


def real_accuracy(real_dir: str | Path, cfg: KnowledgeConfig | None = None, sar_acd_per_class: int = 0) -> list[dict]:
    """The knowledge layer's per-dimension agreement with the real labels found under `real_dir` (folders
    missing there are left out); `sar_acd_per_class` > 0 takes only that many chips per aircraft class."""
    cfg = cfg or KnowledgeConfig()
    real_dir = Path(real_dir)
    rows = []
    if (real_dir / "sen1floods11").is_dir():
        rows += sen1floods11(real_dir / "sen1floods11", cfg)
    if (real_dir / "hrsid").is_dir():
        rows += hrsid(real_dir / "hrsid", cfg)
    if (real_dir / "sar_acd").is_dir():
        rows += sar_acd(real_dir / "sar_acd", cfg, sar_acd_per_class)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| dimension | dataset | n | correct | accuracy | how |", "|---|---|---|---|---|---|"]
    for r in rows:
        acc = "" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        lines.append(f"| {r['dimension']} | {r['dataset']} | {r['n']} | {r['correct']} | {acc} | {r['how']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    from ..paths import DEFAULT_REAL_DATA, resolve

    print(format_table(real_accuracy(resolve(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_REAL_DATA))))
