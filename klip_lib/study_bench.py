"""`klip bench study --run-dir RUN`: what a finished `klip run` (the study preset's, or any) measured, printed as
markdown: the wall time of each notebook against the hour, and the models x tasks table of notebook 12 (each
pretrained model's headline with its 95% interval beside the no-pretraining reference, the verdict from the
intervals, the strongest other baseline), then one line per test set too small to be evidence."""

from __future__ import annotations

import argparse

from .errors import UserError
from .paths import run_path


class StudyBenchError(UserError, ValueError):
    pass


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True, help="a run folder written by `klip run` (reports/<name>)")
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="the wall-time budget the run is held to "
                        "(default 60: the study preset's hour on 2 CPU cores)")


def notebook_times(run_dir) -> list[dict]:
    """One row per notebook of the run's record (`runner.read_record`): number, name, status, seconds."""
    from .runner import RunError, read_record

    try:
        record = read_record(run_dir)
    except RunError as e:
        raise StudyBenchError(str(e)) from e
    if record is None:
        raise StudyBenchError(f"{run_path(run_dir, 'run.json', create=False)}: no run.json here: pass the folder "
                              "`klip run` wrote (reports/<name>)")
    return [{"number": nb.number, "notebook": nb.name, "status": nb.status, "seconds": nb.seconds}
            for nb in record.notebooks]


def bench(args: argparse.Namespace) -> int:
    import pandas as pd

    from .report import load_metrics, pretraining_effects, small_test_sets
    from .runner import discover

    times = pd.DataFrame(notebook_times(args.run_dir))
    total = times["seconds"].sum() / 60
    missing = [nb.stem for number, nb in discover().items() if number not in set(times["number"])]
    print(f"## {args.run_dir}: wall time per notebook\n")
    print(times.assign(minutes=(times["seconds"] / 60).round(1))[["notebook", "status", "minutes"]]
          .to_markdown(index=False))
    unfinished = list(times.loc[times["status"] != "ok", "notebook"]) + missing
    if unfinished:
        print(f"\n{total:.1f} min so far; not run or not finished: {', '.join(unfinished)}")
    else:
        verdict = "within" if total <= args.budget_minutes else "OVER"
        print(f"\ntotal {total:.1f} min: {verdict} the {args.budget_minutes:g}-minute budget")
    metrics = load_metrics(args.run_dir)
    if not metrics:
        raise StudyBenchError(f"{run_path(args.run_dir, 'metrics', create=False)}: no metrics saved: run the "
                              "notebooks first (`klip run`)")
    print("\n## Did pretraining help? (95% intervals; verdicts from disjoint intervals)\n")
    table = pretraining_effects(metrics)
    print(table.to_markdown(index=False) if len(table) else "no model task blocks in the saved metrics")
    small = small_test_sets(metrics)
    if small:
        print("\n" + "\n".join(f"- {task}: {line}" for task, line in small.items()))
    return 0
