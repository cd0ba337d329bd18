"""`klip simulate`: write a simulated SAR dataset with ground truth (docs/contracts.md layout)."""

from __future__ import annotations

import argparse

from ..errors import positive_int
from .platforms import PLATFORMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiles", type=positive_int, default=48, help="number of tiles (default 48)")
    parser.add_argument("--out", required=True, help="output folder (tiles/, labels/, index.parquet)")
    parser.add_argument("--platforms", nargs="+", default=list(PLATFORMS), choices=list(PLATFORMS), help="platform profiles")
    parser.add_argument("--cities", nargs="+", default=[], help="gazetteer cities to use (default: all)")
    parser.add_argument("--size", type=positive_int, default=256, help="tile size in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def main(args: argparse.Namespace) -> int:
    from ..paths import resolve
    from .simulate import SimConfig, simulate_dataset

    cfg = SimConfig(n_tiles=args.tiles, tile_size=args.size, platforms=tuple(args.platforms), cities=tuple(args.cities),
                    seed=args.seed)
    index = simulate_dataset(resolve(args.out), cfg)
    print(f"wrote {cfg.n_tiles} tiles and the index {index}")
    return 0
