"""Torch datasets over an index (GeoTIFF reads) and over packed memory-mapped shards.

Samples follow docs/contracts.md: `image` [C, S, S] float32 normalised dB (co-pol then cross-pol,
zeros for a missing cross-pol), `text`, `tile_id`, `scene_id`, `facts` (dict or None).
The shard dataset needs only numpy and torch, so it runs on a machine without the geo stack.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import DB_MEAN, DB_STD

CO_POLS, CROSS_POLS = ("VV", "HH"), ("VH", "HV")
SHARD_MANIFEST = "shards.json"


def fallback_caption(facts: dict | None, platform: str = "", city: str = "") -> str:
    """A short plain sentence from the facts, used when no HCoT caption is given."""
    if not facts:
        return f"A SAR image{f' from {platform}' if platform else ''}{f' near {city}' if city else ''}."
    counts = ", ".join(f"{n} {c}{'s' if n > 1 and c != 'aircraft' else ''}" for c, n in facts["counts"].items() if n)
    return (f"A {facts['band']}-band {'/'.join(facts['polarizations'])} SAR image of {facts['terrain']} terrain near "
            f"{facts['city']}, {facts['country']}, mostly {facts['main_landform']}" + (f", with {counts}." if counts else "."))


def load_captions(path: str | os.PathLike | None) -> dict[str, list[str]]:
    """tile_id -> caption texts from an HCoT captions JSONL (failed rows left out); {} without a path."""
    captions: dict[str, list[str]] = {}
    if path:
        for line in Path(path).read_text().splitlines():
            rec = json.loads(line) if line.strip() else None
            if rec and rec.get("status", "ok") == "ok" and rec.get("text"):
                captions.setdefault(rec["tile_id"], []).append(rec["text"])
    return captions


def pick_caption(texts: list[str] | None, draw: int | None, facts: dict | None, platform: str, city: str) -> str:
    """One of a tile's captions: the `draw`-th (cycling) when given, else a random one; the fallback without any."""
    if not texts:
        return fallback_caption(facts, platform, city)
    return texts[draw % len(texts)] if draw is not None else random.choice(texts)


def split_key(key) -> tuple[int, int | None]:
    """Dataset keys are an index or (index, draw): the draw picks the caption reproducibly (training resume)."""
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)


def load_facts(index_path: str | os.PathLike, facts_path: str | None) -> dict | None:
    """The facts record named by an index row (relative to the index folder), or None when it has none."""
    if not facts_path:
        return None
    return json.loads((Path(index_path).parent / facts_path).read_text())


def to_model_image(bands: np.ndarray, pols: list[str], channels: int, size: int) -> torch.Tensor:
    """[C, size, size] float32: co-pol then cross-pol (zeros when absent), (dB - DB_MEAN) / DB_STD, NaN -> 0."""
    order = [next((i for i, p in enumerate(pols) if p in CO_POLS), 0)]
    order.append(next((i for i, p in enumerate(pols) if p in CROSS_POLS), -1))
    x = torch.zeros((channels,) + bands.shape[1:], dtype=torch.float32)
    for c in range(channels):
        if c < len(order) and order[c] >= 0 and order[c] < len(bands):
            x[c] = torch.from_numpy((bands[order[c]] - DB_MEAN) / DB_STD)
    x = torch.nan_to_num(x, nan=0.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x


def _read_rows(index_path, split):
    import pyarrow.parquet as pq

    cols = ["tile_id", "path", "scene_id", "split", "polarizations", "facts_path", "platform", "city"]
    rows = pq.read_table(index_path, columns=cols).to_pylist()
    return [r for r in rows if split is None or r["split"] == split]


class SarTileDataset(Dataset):
    """Tiles read from their GeoTIFFs through the index (rasterio needed)."""

    def __init__(self, index_path: str | os.PathLike, image_size: int = 64, channels: int = 2,
                 split: str | None = None, captions: str | os.PathLike | None = None):
        self.index_path = Path(index_path)
        self.rows = _read_rows(self.index_path, split)
        self.image_size, self.channels = image_size, channels
        self.captions = load_captions(captions)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict:
        from .geotiff import read_tile

        i, draw = split_key(key)
        row = self.rows[i]
        bands, meta = read_tile(self.index_path.parent / row["path"])
        facts = load_facts(self.index_path, row["facts_path"])
        texts = self.captions.get(row["tile_id"])
        return {"image": to_model_image(bands, meta.polarizations, self.channels, self.image_size),
                "text": pick_caption(texts, draw, facts, row["platform"], row["city"]),
                "tile_id": row["tile_id"], "scene_id": row["scene_id"] or "", "facts": facts}


def build_shards(index_path: str | os.PathLike, out_dir: str | os.PathLike, image_size: int = 64, channels: int = 2,
                 shard_size: int = 1024) -> Path:
    """Pack every tile of an index into float16 .npy shards [N, C, S, S] plus a JSON manifest; return its path."""
    from tqdm.auto import tqdm

    from ..files import write_json_atomic

    ds = SarTileDataset(index_path, image_size, channels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, shards = [], []
    for start in tqdm(range(0, len(ds), shard_size), desc="shards", unit="shard"):
        idx = range(start, min(start + shard_size, len(ds)))
        arr = np.zeros((len(idx), channels, image_size, image_size), np.float16)
        for j, i in enumerate(idx):
            s = ds[i]
            arr[j] = s["image"].numpy()
            row = ds.rows[i]
            records.append({"tile_id": s["tile_id"], "scene_id": s["scene_id"], "split": row["split"], "shard": len(shards),
                            "row": j, "platform": row["platform"], "city": row["city"], "facts": s["facts"]})
        name = f"shard_{len(shards):05d}.npy"
        np.save(out / name, arr)
        shards.append(name)
    manifest = {"image_size": image_size, "channels": channels, "db_mean": DB_MEAN, "db_std": DB_STD,
                "shards": shards, "tiles": records}
    return write_json_atomic(out / SHARD_MANIFEST, manifest)


class ShardDataset(Dataset):
    """Tiles from packed shards, memory-mapped (numpy + torch only)."""

    def __init__(self, shard_dir: str | os.PathLike, split: str | None = None, captions: str | os.PathLike | None = None):
        self.dir = Path(shard_dir)
        manifest_path = self.dir / SHARD_MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no {SHARD_MANIFEST} in {self.dir}: build the shards with klip_lib.data.build_shards")
        manifest = json.loads(manifest_path.read_text())
        self.arrays = [np.load(self.dir / name, mmap_mode="r") for name in manifest["shards"]]
        self.tiles = [t for t in manifest["tiles"] if split is None or t["split"] == split]
        self.captions = load_captions(captions)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, key) -> dict:
        i, draw = split_key(key)
        t = self.tiles[i]
        image = torch.from_numpy(np.asarray(self.arrays[t["shard"]][t["row"]], dtype=np.float32))
        texts = self.captions.get(t["tile_id"])
        return {"image": image, "text": pick_caption(texts, draw, t["facts"], t["platform"], t["city"]),
                "tile_id": t["tile_id"], "scene_id": t["scene_id"], "facts": t["facts"]}
