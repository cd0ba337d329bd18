"""`klip bench caption`: template captions per second (realise, validate, calibrate, fact-check) on one core."""

from __future__ import annotations

import argparse
import time

from .backends import TemplateBackend
from .generate import caption_batch, load_index_facts


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default="", help="index.parquet to caption (default: the smoke dataset of "
                        "reports/bench, simulated when missing)")
    parser.add_argument("--captions", type=int, default=2000, help="captions to make (tiles repeat with new seeds)")
    parser.add_argument("--level", choices=("L4", "L5"), default="L5")


def bench(args: argparse.Namespace) -> int:
    if args.index:
        index = args.index
    else:
        from ..data import ensure_dataset
        index = ensure_dataset("reports/bench", "smoke", 0)
    facts, _ = load_index_facts(index)
    if not facts:
        print(f"klip bench caption: {index} has no tiles with facts to caption")
        return 2
    backend = TemplateBackend()
    made, seed = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    while made < args.captions:
        batch = facts[: args.captions - made]
        records = caption_batch(batch, backend, args.level, seed=seed)
        made += len(records)
        seed += 1
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ok = sum(all(v is not False for v in r["factcheck"].values()) for r in records)
    print(f"caption: {made} template captions at {args.level} in {seconds:.2f} s wall = {made / seconds:.0f} "
          f"captions/s ({made / cpu:.0f} per CPU-second; last batch fully fact-checked: {ok}/{len(records)})")
    return 0
