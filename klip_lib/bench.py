"""`klip bench TOPIC`: benchmarks that print their figures (never asserted by timed tests): throughput of data,
captioning and pretraining; SCIO's screening study over seeds; SCIO's downstream effect (scio-effect); what a
finished run measured, against its hour (study)."""

from __future__ import annotations

import argparse
import importlib
import sys

# topic -> module with `add_bench_arguments(parser)` and `bench(args) -> int`
TOPICS: dict[str, str] = {
    "data": "klip_lib.data.bench",
    "caption": "klip_lib.hcot.bench",
    "pretrain": "klip_lib.train_bench",
    "scio": "klip_lib.scio_bench",
    "scio-effect": "klip_lib.scio_effect_bench",
    "study": "klip_lib.study_bench",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="topic", required=True)
    for topic, module in TOPICS.items():
        p = sub.add_parser(topic, help=f"benchmark {topic}")
        try:
            importlib.import_module(module).add_bench_arguments(p)
        except ModuleNotFoundError as e:
            if not e.name or not e.name.startswith("klip_lib"):
                raise
        p.set_defaults(_bench_module=module)


def main(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(args._bench_module)
    except ModuleNotFoundError as e:
        print(f"klip bench {args.topic}: not available in this version ({e.name} missing)", file=sys.stderr)
        return 2
    return int(module.bench(args) or 0)
