"""`klip bench data`: tiles per second for simulation, raw GeoTIFF reads and shard reads."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ..errors import positive_int


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiles", type=positive_int, default=64, help="tiles to simulate and read (default 64)")
    parser.add_argument("--size", type=positive_int, default=256, help="tile size in pixels (default 256)")
    parser.add_argument("--image-size", type=positive_int, default=224, help="model image size for reads (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")


def _rate(n: int, fn) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def bench(args: argparse.Namespace) -> int:
    from .dataset import SarTileDataset, ShardDataset, build_shards
    from .geotiff import read_tile
    from .index import read_index
    from .simulate import SimConfig, simulate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cfg = SimConfig(n_tiles=args.tiles, tile_size=args.size, seed=args.seed)
        sim = _rate(args.tiles, lambda: simulate_dataset(out / "sim", cfg, progress=False))
        index = out / "sim" / "index.parquet"
        paths = [index.parent / p for p in read_index(index)["path"]]
        raw = _rate(len(paths), lambda: [read_tile(p) for p in paths])
        ds = SarTileDataset(index, image_size=args.image_size)
        tiles = _rate(len(ds), lambda: [ds[i] for i in range(len(ds))])
        build_shards(index, out / "shards", image_size=args.image_size)
        sd = ShardDataset(out / "shards")
        shards = _rate(len(sd), lambda: [sd[i] for i in range(len(sd))])
    print(f"data bench: {args.tiles} tiles of {args.size} px, model images {args.image_size} px")
    print(f"  simulate (incl. GeoTIFF/label/index writes): {sim:8.1f} tiles/s")
    print(f"  raw GeoTIFF reads (rasterio):               {raw:8.1f} tiles/s")
    print(f"  SarTileDataset samples (read + resize):     {tiles:8.1f} tiles/s")
    print(f"  shard samples (memory-mapped):              {shards:8.1f} tiles/s")
    return 0
