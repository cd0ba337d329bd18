"""Caption accuracy per backend on real labels (issue 18, part 3): the knowledge layer's facts are the first row,
then each backend's captions after L5, every claim parsed back from the caption text by the fact-checker's parsers
and compared with the label (klip_lib.knowledge.labels), per dimension, with its item count and a 95% bootstrap
interval (evidence.mean_interval; the 3x3 cells of one tile are resampled together).

`python -m klip_lib.hcot.label_accuracy DIR [--llm-tiles N] [--tile-px P]` prints the table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tqdm.auto import tqdm

from ..evidence import MIN_TEST_ITEMS, format_interval, mean_interval
from ..knowledge.config import KnowledgeConfig
from ..knowledge.facts import build_facts
from ..knowledge.labels import DIMENSIONS, LabelledTile, facts_claims, find_labelled, score
from . import factcheck as fc
from .generate import caption_batch

KNOWLEDGE_ROW = "knowledge layer (facts)"
MAJORITY_ROW = "majority label (baseline)"
LLM_DIMENSIONS = ("Water", "Count", "Location", "Environment")
"""The dimensions a local LLM is asked for here (the ones real labels score); L5 fills the rest from the facts."""
BLOCK_PREFIX = "caption_accuracy_real/"


def _text(record: dict, dim: str) -> str | None:
    value = record.get(dim)
    return fc.LABEL.sub("", value, count=1) if value else None


def caption_claims(record: dict, truth: dict) -> dict:
    """What a caption claims on the labelled dimensions, read back from its text (None: no claim)."""
    water, count, location = (_text(record, d) for d in ("Water", "Count", "Location"))
    text = record.get("text") or ""  # the place may be named in any dimension (the template: Environment)
    counts = fc.claimed_counts(count) if count else None
    present = [c for c, n in (counts or {}).items() if n]
    cells = dict(fc.class_claims(location, fc.TARGET_WORDS, present, fc.mentioned_cells)) if location else {}
    country = truth.get("country")
    return {"water_present": fc.water_claim(water) if water else None,
            "country": country if country and country.lower() in text.lower() else None,
            "ship_count": None if counts is None else counts.get("ship", 0),
            "ship_cells": set(cells.get("ship", [])) if counts is not None else None,
            "aircraft_present": None if counts is None else counts.get("aircraft", 0) > 0}


def majority_claims(items: list[LabelledTile]) -> dict:
    """The trivial baseline: the most common label value per dimension (for ship cells, the cells that hold a
    ship in most tiles), claimed for every tile."""
    from collections import Counter

    out = {}
    for key in ("water_present", "country", "ship_count", "aircraft_present"):
        values = [i.truth[key] for i in items if key in i.truth]
        if values:
            out[key] = Counter(values).most_common(1)[0][0]
    cells = [c for i in items if "ship_cells" in i.truth for c in i.truth["ship_cells"]]
    n = sum("ship_cells" in i.truth for i in items)
    out["ship_cells"] = {c for c, k in Counter(cells).items() if k > n / 2}
    return out


def _sample(items: list[LabelledTile], limit: int, seed: int) -> list[LabelledTile]:
    """At most `limit` items per dataset (0: all), drawn with `seed`, in their original order."""
    import numpy as np

    if limit <= 0:
        return items
    keep = []
    for ds in dict.fromkeys(i.dataset for i in items):
        idx = [k for k, i in enumerate(items) if i.dataset == ds]
        keep += sorted(np.random.default_rng(seed).permutation(idx)[:limit].tolist())
    return [items[k] for k in sorted(keep)]


def _rows(name: str, marks: dict[str, list[tuple[str, str, int]]], seed: int) -> list[dict]:
    rows = []
    for dim in DIMENSIONS:
        got = marks.get(dim, [])
        if not got:
            continue
        scores = [m for _, _, m in got]
        groups = [t for t, _, _ in got] if dim == "ships in 3x3 cell" else None
        lo, hi = mean_interval(scores, groups, seed=seed)
        rows.append({"row": name, "dimension": dim, "dataset": ",".join(sorted({d for _, d, _ in got})),
                     "n": len(scores), "tiles": len({t for t, _, _ in got}), "correct": int(sum(scores)),
                     "accuracy": round(sum(scores) / len(scores), 4), "ci": [round(lo, 4), round(hi, 4)]})
    return rows


def _add(marks: dict, item: LabelledTile, claims: dict) -> None:
    for dim, ms in score(item.truth, claims).items():
        marks.setdefault(dim, []).extend((item.item_id, item.dataset, m) for m in ms)


def evaluate(items: list[LabelledTile], backends: dict[str, object], limits: dict[str, int] | None = None,
             cfg: KnowledgeConfig | None = None, seed: int = 0, batch_size: int = 16, progress: bool = True
             ) -> list[dict]:
    """Rows {row, dimension, dataset, n, tiles, correct, accuracy, ci} for the knowledge layer and each backend
    (name -> backend; `limits[name]` > 0 captions at most that many tiles per dataset with it)."""
    cfg = cfg or KnowledgeConfig()
    facts = {i.item_id: build_facts(i.bands, i.info, cfg)
             for i in tqdm(items, desc="facts (labelled tiles)", unit="tile", disable=not progress)}
    marks: dict[str, list] = {}
    for item in items:
        _add(marks, item, facts_claims(facts[item.item_id], item.truth))
    rows = _rows(KNOWLEDGE_ROW, marks, seed)
    marks, majority = {}, majority_claims(items)
    for item in items:
        _add(marks, item, majority)
    rows += _rows(MAJORITY_ROW, marks, seed)
    for name, backend in backends.items():
        chosen = _sample(items, (limits or {}).get(name, 0), seed)
        marks = {}
        bar = tqdm(total=len(chosen), desc=f"captions {name} L5 (labelled tiles)", unit="tile", disable=not progress)
        for k in range(0, len(chosen), batch_size):
            batch = chosen[k:k + batch_size]
            records = caption_batch([facts[i.item_id] for i in batch], backend, "L5", seed)
            for item, record in zip(batch, records):
                _add(marks, item, caption_claims(record, item.truth) if record["status"] == "ok" else {})
            bar.update(len(batch))
        bar.close()
        rows += _rows(name, marks, seed)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: one line per (row, dimension) with n, tiles, accuracy [95% CI], and the plumbing-check flag."""
    out = ["| row | dimension | dataset | n | tiles | correct | accuracy [95% CI] | |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        flag = f"plumbing check (n < {MIN_TEST_ITEMS})" if r["n"] < MIN_TEST_ITEMS else ""
        out.append(f"| {r['row']} | {r['dimension']} | {r['dataset']} | {r['n']} | {r['tiles']} | {r['correct']} | "
                   f"{format_interval(r['accuracy'], r['ci'])} | {flag} |")
    return "\n".join(out)


def task_blocks(rows: list[dict]) -> dict[str, dict]:
    """One metrics block per dimension (report.task_blocks reads them): the rows as 'methods' with their
    accuracy, n and interval; n_test is the smallest n among them."""
    blocks = {}
    for dim in dict.fromkeys(r["dimension"] for r in rows):
        mine = [r for r in rows if r["dimension"] == dim]
        blocks[BLOCK_PREFIX + dim] = {
            "task": "caption accuracy (real labels)", "headline": "accuracy", "compares": "methods",
            "models": {r["row"]: {"accuracy": r["accuracy"], "n": r["n"], "tiles": r["tiles"]} for r in mine},
            "ci": {r["row"]: r["ci"] for r in mine}, "n_test": min(r["n"] for r in mine),
            "dataset": mine[0]["dataset"]}
    return blocks


def plot(rows: list[dict], path: str | os.PathLike | None = None,
         title: str = "Per-dimension accuracy on real labels (95% CI)"):
    """Grouped bars with error bars: a group per dimension, a bar per row (knowledge layer, backends); the
    dimension labels carry each group's n. Saved as PNG when `path` is given; returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    dims = [d for d in DIMENSIONS if any(r["dimension"] == d for r in rows)]
    names = list(dict.fromkeys(r["row"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(dims) + 2), 3.8))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        got = {r["dimension"]: r for r in rows if r["row"] == name}
        acc = np.array([got[d]["accuracy"] if d in got else np.nan for d in dims])
        lo = np.array([got[d]["ci"][0] if d in got else np.nan for d in dims])
        hi = np.array([got[d]["ci"][1] if d in got else np.nan for d in dims])
        err = np.nan_to_num(np.vstack([acc - lo, hi - acc]).clip(min=0))
        ax.bar(np.arange(len(dims)) + k * width, acc, width, yerr=err, capsize=3, label=name)
    labels = [d + "\nn=" + "/".join(str(r["n"]) for r in rows if r["dimension"] == d) for d in dims]
    ax.set_xticks(np.arange(len(dims)) + width * (len(names) - 1) / 2, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m klip_lib.hcot.label_accuracy", description=__doc__.splitlines()[0])
    p.add_argument("folder", help="a folder holding Sen1Floods11 / HRSID / SAR-ACD files (any depth)")
    p.add_argument("--tile-px", type=int, default=128, help="tile size large rasters are cut into (default 128)")
    p.add_argument("--llm-tiles", type=int, default=0, help="tiles per dataset the local LLM captions (0: none)")
    p.add_argument("--llm-model", default="", help="a transformers folder or .gguf (default SmolLM2-135M)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    items, problems = find_labelled(a.folder, a.tile_px)
    for line in problems:
        print(line)
    backends, limits = backends_for(None, a.llm_tiles, a.llm_model)
    print(format_table(evaluate(items, backends, limits, seed=a.seed)))


def backends_for(caption_cfg, llm_tiles: int = 0, llm_model: str = "", llm_steps: int = 24
                 ) -> tuple[dict[str, object], dict[str, int]]:
    """The rows after the knowledge layer's: the template always; the local LLM (SmolLM2 GGUF by default) on at
    most `llm_tiles` tiles per dataset when > 0; the OpenAI-compatible server when `caption_cfg` names one
    (backend 'openai' with a base_url), on as many tiles. Returns (backends by row name, per-row tile caps)."""
    from .backends import TransformersBackend, make_backend
    from .generate import backend_from_config

    backends, limits = {"template": make_backend("template")}, {}
    if llm_tiles > 0:
        name = "local LLM " + (Path(llm_model).name if llm_model else "SmolLM2-135M")
        backends[name] = TransformersBackend(model=llm_model, dimensions=LLM_DIMENSIONS, max_new_tokens=llm_steps)
        limits[name] = llm_tiles
    if caption_cfg is not None and caption_cfg.backend == "openai" and caption_cfg.base_url:
        name = f"openai {caption_cfg.model}".strip()
        backends[name], limits[name] = backend_from_config(caption_cfg), llm_tiles
    return backends, limits


if __name__ == "__main__":
    main()
