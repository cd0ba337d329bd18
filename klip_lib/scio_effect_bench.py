"""`klip bench scio-effect`: SCIO's downstream effect (klip_lib.scio_effect) at one preset and seed: pretrains the
arms (clean, noisy, no-screening, released, calibrated) in RUN_DIR/scio/effect, scores them on retrieval, captioning and VQA, prints
the arms x tasks table (stderr) and one JSON object (stdout), and writes the whole result to
RUN_DIR/scio/effect/effect.json. Arms already trained there with the same settings are loaded, so tasks can be
scored in separate calls (`--tasks captioning` after `--tasks retrieval vqa`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from .scio_effect import ARMS, TASKS, EffectConfig, effect_table, scio_effect


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="smoke", help="data/model/train preset (default smoke)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset, the noise and every arm")
    parser.add_argument("--run-dir", default="reports/bench-scio-effect", help="run folder (dataset, captions, arms)")
    parser.add_argument("--noise", default="expert", help="noise profile: expert or stress (scio_inject.NOISE_PROFILES)")
    parser.add_argument("--copies", type=int, default=1, help="corrupted copies of each training caption")
    parser.add_argument("--steps", type=int, default=0, help="pretraining steps of every arm (0: the preset's)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), help=f"arms ({', '.join(ARMS)})")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"downstream tasks ({', '.join(TASKS)})")
    parser.add_argument("--caption-steps", type=int, default=0, help="captioning fine-tuning steps (0: the preset's "
                        "notebook 10 setting)")
    parser.add_argument("--vqa-steps", type=int, default=0, help="VQA fine-tuning steps (0: the preset's notebook 11 "
                        "setting)")


def bench(args: argparse.Namespace) -> int:
    """Prints the arms x tasks table and one JSON object (blocks without per-item data, differences, arms' logs);
    writes the whole result to RUN_DIR/scio/effect/effect.json."""
    import pandas as pd

    from . import artifacts
    from .files import write_json_atomic
    from .paths import run_path
    from .presets import notebook_parameters

    steps = lambda given, nb, default: given or notebook_parameters(args.preset, nb).get("steps", default)  # noqa: E731
    cfg = EffectConfig(noise=args.noise, copies=args.copies, steps=args.steps, arms=tuple(args.arms),
                       tasks=tuple(args.tasks),
                       caption_steps=steps(args.caption_steps, "10_eval_captioning", EffectConfig.caption_steps),
                       vqa_steps=steps(args.vqa_steps, "11_eval_vqa", EffectConfig.vqa_steps))
    run, t0 = args.run_dir, time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # what the artifacts say as they are built: stdout is the JSON
        shards, captions = artifacts.ensure_shards(run, args.preset, args.seed), artifacts.ensure_captions(
            run, args.preset, args.seed)
        train, test = (artifacts.load_split(run, s, args.preset, args.seed) for s in ("train", "test"))
        result = scio_effect(shards, captions, train, test, run_path(run, "scio", "effect"), args.preset, args.seed,
                             cfg)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = write_json_atomic(run_path(run, "scio", "effect", "effect.json"), result)
    print(pd.DataFrame(effect_table(result)).to_string(index=False), file=sys.stderr)
    print(json.dumps({"preset": args.preset, "seed": args.seed, "noise": result["noise"], "copies": args.copies,
                      "config": result["config"], "seconds": result["seconds"], "saved": str(path),
                      "arms": {a: {k: v for k, v in d.items() if k != "settings"} for a, d in result["arms"].items()},
                      "differences": result["differences"],
                      "scores": {t: {"headline": b["headline"], "n_test": b["n_test"], "ci": b["ci"],
                                     "models": {m: s[b["headline"]] for m, s in b["models"].items()}}
                                 for t, b in result["tasks"].items()}}, indent=1, default=float))
    return 0
