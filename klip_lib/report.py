"""Metrics files of a run: each notebook saves its own, `klip run` merges them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .evidence import baselines, compare_intervals, headline_rows
from .files import write_json_atomic
from .paths import run_path


def save_metrics(run_dir: str | os.PathLike, stem: str, metrics: dict) -> Path:
    """Save one notebook's metrics as `run_dir/metrics/<stem>.json` and return the path."""
    return write_json_atomic(run_path(run_dir, "metrics", f"{stem}.json"), metrics)


def load_metrics(run_dir: str | os.PathLike) -> dict[str, dict]:
    """All metrics saved in a run, keyed by notebook stem."""
    folder = run_path(run_dir, "metrics", create=False)
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def task_blocks(metrics: dict[str, dict]) -> dict[str, dict]:
    """Every task block of a run ({"task", "headline", "models", ...}) by name, from all notebooks' metrics:
    a notebook saves one block at its top level (named after the notebook) or several under "tasks"."""
    blocks = {}
    for stem, m in metrics.items():
        if isinstance(m.get("tasks"), dict):
            blocks.update({name: b for name, b in m["tasks"].items() if isinstance(b, dict) and "models" in b})
        elif "models" in m and "headline" in m:
            blocks[m.get("task", stem)] = m
    return blocks


METHOD_TASKS = {"screening"}  # tasks whose rows are methods (SCIO, CapFilt, random flagging), not models
BASELINE_MODELS = ("random",)  # the random-init control: scored like a model, a baseline all the same


def is_method_block(block: dict) -> bool:
    """A block that compares methods applied to data rather than models (`"compares": "methods"` or its task)."""
    return block.get("compares") == "methods" or block.get("task") in METHOD_TASKS


def interval(block: dict, name: str) -> tuple[float, float] | None:
    """The 95% interval of `name`'s headline when the block carries one (`ci`: {name: [low, high]})."""
    ci = (block.get("ci") or {}).get(name)
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return None
    low, high = float(ci[0]), float(ci[1])
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None  # NaN: undefined in some resamples


def _label(name: str, block: dict) -> str:
    return f"{name} {block['headline']}" + ("" if block.get("higher_is_better", True) else " ↓")


def radar_tables(metrics: dict[str, dict]):
    """(models, baselines, methods) DataFrames for `viz.radar_chart`: rows by name, a column per task's headline,
    lower-is-better columns inverted (best / value over models and baselines together). Methods (screening:
    SCIO, CapFilt, random flagging) are kept apart from models; baselines are the blocks' `baseline(s)`."""
    import pandas as pd

    models, base, methods = {}, {}, {}
    for name, block in sorted(task_blocks(metrics).items()):
        key, label = block["headline"], _label(name, block)
        rows = {m: s.get(key) if isinstance(s, dict) else None for m, s in block["models"].items()}
        if is_method_block(block):
            methods[label] = rows
            continue
        models[label] = rows
        base[label] = {b: s.get(key) for b, s in baselines(block).items()}
    models, base = pd.DataFrame(models).astype(float), pd.DataFrame(base, columns=list(models)).astype(float)
    for col in [c for c in models.columns if c.endswith("↓")]:
        best = pd.concat([models[col], base[col]]).min()
        models[col], base[col] = best / models[col], best / base[col]
    return models, base, pd.DataFrame(methods).astype(float)


def comparison_table(metrics: dict[str, dict]):
    """Models x tasks DataFrame of each task's headline metric (NaN where a model was not scored; lower-is-better
    metrics are kept as measured and marked with a trailing '↓' in the column name)."""
    import pandas as pd

    columns = {}
    for name, block in sorted(task_blocks(metrics).items()):
        key = block["headline"]
        label = f"{name} {key}" + ("" if block.get("higher_is_better", True) else " ↓")
        columns[label] = {model: scores.get(key) if isinstance(scores, dict) else None
                          for model, scores in block["models"].items()}
    return pd.DataFrame(columns).astype(float)


def _headline_label(name: str, block: dict) -> str:
    return f"{name} {block['headline']}" + ("" if block.get("higher_is_better", True) else " ↓")


def interval_tables(metrics: dict[str, dict]):
    """(low, high): two models x tasks DataFrames shaped like `comparison_table`, the ends of each headline's 95%
    bootstrap interval (the block's `ci`; NaN where a block or model has none)."""
    import pandas as pd

    ends = ({}, {})
    for name, block in sorted(task_blocks(metrics).items()):
        cis = block.get("ci") or {}
        for k, end in enumerate(ends):
            end[_headline_label(name, block)] = {m: (cis.get(m) or [None, None])[k] for m in block["models"]}
    return pd.DataFrame(ends[0]).astype(float), pd.DataFrame(ends[1]).astype(float)


def display_table(metrics: dict[str, dict], digits: int = 3):
    """`comparison_table` as strings for display, each headline with its interval ('0.583 [0.410, 0.720]'), and
    a last row `n_test` with each task's test-set size."""
    from .evidence import format_interval

    table = comparison_table(metrics)
    low, high = interval_tables(metrics)
    out = table.astype(object)
    for col in table.columns:
        for model in table.index:
            v, lo, hi = table.at[model, col], low.get(col, {}).get(model), high.get(col, {}).get(model)
            ci = None if lo is None or hi is None else (lo, hi)
            out.at[model, col] = format_interval(None if v != v else float(v), ci, digits)
    n_test = {_headline_label(name, b): b.get("n_test") for name, b in task_blocks(metrics).items()}
    out.loc["n_test"] = [("n/a" if n_test.get(c) is None else str(n_test[c])) for c in out.columns]
    return out


def small_test_sets(metrics: dict[str, dict]) -> dict[str, str]:
    """{task: one-line warning} for every task block whose test set is too small to be evidence
    (`evidence.small_test_set`: fewer than `evidence.MIN_TEST_ITEMS` items, or no size recorded)."""
    from .evidence import small_test_set

    return {name: line for name, block in sorted(task_blocks(metrics).items()) if (line := small_test_set(block))}


NO_PRETRAINING = ("random", "supervised (scratch)")  # no-pretraining references, in order of preference


def pretraining_effects(metrics: dict[str, dict]):
    """Did pretraining help, task by task? A DataFrame with a row per model task block and pretrained model: its
    headline [95% interval] beside the no-pretraining reference's (random init among the models; where every
    model is fine-tuned, the same architecture trained from scratch), the verdict from the intervals (`helped`,
    `hurt`, `no difference shown`; `not evidence` where the test set is too small), and the strongest other
    baseline (raw pixels, chance, ...) with how the model stands against it (a baseline without an interval, such as
    chance or random ranking, is an exact value)."""
    import pandas as pd

    from .evidence import format_interval, small_test_set

    verdicts = {"better": "helped", "worse": "hurt", "overlap": "no difference shown", "n/a": "n/a (no interval)"}
    rows = []
    for name, block in sorted(task_blocks(metrics).items()):
        if is_method_block(block):
            continue
        key, up = block["headline"], block.get("higher_is_better", True)
        scores = headline_rows(block)
        # random init among the models; the scratch-trained encoder only where every model is fine-tuned (headline
        # finetune_*; against frozen features, a linear probe's, it would be no fair reference)
        fine_tuned = key.startswith("finetune")
        reference = next((r for r in NO_PRETRAINING if scores.get(r) is not None
                          and (r in block["models"] or fine_tuned)), None)
        others = {b: v for b, v in scores.items() if b not in block["models"] and b != reference and v is not None}
        strongest = (max if up else min)(others, key=others.get) if others else None
        small = small_test_set(block)
        for model, value in scores.items():
            if model not in block["models"] or model in NO_PRETRAINING or value is None:
                continue
            verdict = verdicts[compare_intervals(interval(block, model), interval(block, reference), up)] \
                if reference else "n/a (no reference)"
            vs_baseline = "n/a"
            if strongest:  # a baseline without an interval (chance, random ranking) is an exact value
                exact = interval(block, strongest) or (others[strongest],) * 2
                vs_baseline = "not evidence" if small else compare_intervals(interval(block, model), exact, up)
            rows.append({
                "task": f"{name} {key}" + ("" if up else " ↓"), "model": model,
                "score": format_interval(value, interval(block, model)),
                "no pretraining": f"{reference} {format_interval(scores[reference], interval(block, reference))}"
                if reference else "n/a",
                "pretraining": "not evidence" if small and reference else verdict,
                "strongest baseline": f"{strongest} {format_interval(others[strongest], interval(block, strongest))}"
                if strongest else "n/a",
                "vs baseline": vs_baseline,
                "n_test": block.get("n_test"),
            })
    return pd.DataFrame(rows)


def radar_scores(table):
    """The comparison table with lower-is-better columns inverted (best / value), ready for `viz.radar_chart`."""
    out = table.copy()
    for col in out.columns:
        if col.endswith("↓"):
            out[col] = out[col].min() / out[col]
    return out


def provenance(run_dir: str | os.PathLike) -> dict:
    """What produced the run: git commit, preset, seed, versions, device, wall time per notebook."""
    import platform
    import subprocess

    from .environment import check_device, check_versions
    from .paths import ROOT

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    run = json.loads(p.read_text()) if (p := run_path(run_dir, "run.json", create=False)).exists() else {}
    return {
        "git_commit": git("rev-parse", "HEAD") or "unknown (not a git checkout)",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "preset": run.get("preset"), "seed": run.get("seed"), "started": run.get("started"),
        "python": platform.python_version(),
        "versions": {c.name: c.detail for c in check_versions()},
        "device": "; ".join(c.detail for c in check_device()),
        "wall_time_s": {nb["name"]: nb["seconds"] for nb in run.get("notebooks", [])},
    }


def report_section(table, provenance_: dict, figures: dict[str, str], not_provided: dict[str, str],
                   extra: str = "") -> str:
    """The HTML block `klip run` puts at the top of the run's index.html: figures, table, `extra` (the claims
    ledger and the task pages' links), provenance."""
    import html

    imgs = "".join(f'<figure><img src="{html.escape(src)}" style="max-width:720px"><figcaption>'
                   f'{html.escape(caption)}</figcaption></figure>' for caption, src in figures.items())
    missing = "".join(f"<li>{html.escape(k)}: not provided ({html.escape(v)})</li>" for k, v in not_provided.items())
    prov = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v) if isinstance(v, dict) else str(v))}"
                   f"</td></tr>" for k, v in provenance_.items())
    return (f"<h2>Comparison</h2>{imgs}{table.to_html(float_format=lambda v: f'{v:.3f}', na_rep='n/a')}"
            + (f"<h3>External models</h3><ul>{missing}</ul>" if missing else "") + extra
            + f"<h2>Provenance</h2><table>{prov}</table>")
