"""The claims ledger: the paper's headline results (klip_lib/claims.csv) beside this run's number for the same task.

Each claim names the run's task blocks that answer it (`counterparts`, first found wins), the metric key (empty:
the block's headline) and the factor that puts our fraction on the paper's 0-100 scale. `same_data` is "yes",
"sample" (the same public dataset, a sample of it) or "no" (not run on the same data: the paper's dataset is not
public or not in this run, the nearest task of this run is shown instead). Reads task blocks in the
docs/contracts.md shape, with the optional `ci` ({name: [low, high]}), `n_test` and `baselines`.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass
from pathlib import Path

from .evidence import baselines
from .report import interval, task_blocks

CLAIMS = Path(__file__).with_name("claims.csv")
OURS = "klip"  # the model this workbench builds; the others are what it is compared with
DATA_LABELS = {  # block-name suffix -> the data it was scored on
    "sim": "simulated tiles (this run's simulator)", "sim_targets": "simulated target chips (this run's simulator)",
    "sar_acd": "SAR-ACD (real, a sample)", "hrsid": "HRSID (real ships, a sample)",
    "sen1floods11": "Sen1Floods11 (real, one chip)",
}
SIZE_KEYS = ("n_test", "questions", "tiles", "captions", "images", "windows", "counts", "boxes")


@dataclass
class Claim:
    task: str
    dataset: str
    paper: float
    previous_best: float
    metric: str  # key in the counterpart block's scores; "" = its headline
    scale: float  # ours x scale is on the paper's scale
    counterparts: tuple[str, ...]  # task-block names of this run, in order of preference
    same_data: str  # yes | sample | no
    source: str


def load_claims(path: str | Path = CLAIMS) -> list[Claim]:
    """The paper's headline values with their source, one Claim per row of the CSV."""
    with open(path, newline="") as f:
        return [Claim(r["task"], r["dataset"], float(r["paper"]), float(r["previous_best"]), r["metric"],
                      float(r["scale"] or 1), tuple(r["counterparts"].split()), r["same_data"], r["source"])
                for r in csv.DictReader(f)]


def test_size(block: dict) -> str:
    """The size of the data a block was scored on, in words ("240 questions", "train 40 / test 24 windows")."""
    for key in SIZE_KEYS:
        value = block.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            return f"{value:g} test items" if key == "n_test" else f"{value:g} {key}"
        if isinstance(value, dict) and value:
            parts = {p: (sum(v.values()) if isinstance(v, dict) else v) for p, v in value.items()}
            return " / ".join(f"{p} {n:g}" for p, n in parts.items() if isinstance(n, (int, float))) + \
                f" {'chips' if key == 'counts' else key}"
    return "size not recorded"


def data_label(block_name: str) -> str:
    """What a block was scored on, from its name ("detection/hrsid" -> HRSID ...)."""
    suffix = block_name.split("/", 1)[-1]
    return DATA_LABELS.get(suffix, suffix)


def fmt(value, scale: float = 1.0, digits: int = 1) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def _score(scores: dict | None, key: str):
    value = (scores or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ledger_rows(metrics: dict[str, dict], claims: list[Claim] | None = None) -> list[dict]:
    """One row per claim: the paper's value and previous best, this run's KLIP number and best other
    (model or baseline) for the same task on the paper's scale, and what differs."""
    blocks = task_blocks(metrics)
    rows = []
    for c in claims if claims is not None else load_claims():
        name = next((b for b in c.counterparts if b in blocks), None)
        row = {"task": c.task, "dataset": c.dataset, "paper": c.paper, "previous_best": c.previous_best,
               "paper_gain": c.paper - c.previous_best, "block": name, "ours": None, "ours_ci": None,
               "best_other": None, "best_other_name": None, "same_data": c.same_data, "source": c.source}
        if name is None:
            row["differs"] = ("not run on the same data" if c.same_data == "no" else "not run in this run")
            row["differs"] += f"; the nearest task, {' or '.join(c.counterparts)}, is not in this run either"
            rows.append(row)
            continue
        block = blocks[name]
        key = c.metric or block["headline"]
        others = {m: _score(s, key) for m, s in block["models"].items() if m != OURS}
        others.update({b: _score(s, key) for b, s in baselines(block).items()})
        others = {m: v for m, v in others.items() if v is not None}
        ours = _score(block["models"].get(OURS), key)
        ci = interval(block, OURS) if key == block["headline"] else None
        best = max(others, key=others.get) if others else None
        row.update(ours=None if ours is None else ours * c.scale, ours_ci=ci and (ci[0] * c.scale, ci[1] * c.scale),
                   best_other=None if best is None else others[best] * c.scale, best_other_name=best)
        data = {"yes": "same dataset", "sample": f"same dataset, a sample of it: {data_label(name)}",
                "no": f"not run on the same data: ours {data_label(name)}, the paper's {c.dataset}"}[c.same_data]
        scale = f"size: {test_size(block)}"
        metric = (f"metric: ours {key} x {c.scale:g}; the paper's unnamed (read off the radar chart)")
        row["differs"] = "; ".join([data, scale, metric])
        rows.append(row)
    return rows


def ledger_html(metrics: dict[str, dict], claims: list[Claim] | None = None) -> str:
    """The ledger as an HTML section for the run's index.html."""
    e = html.escape
    head = ("<tr><th>task</th><th>dataset (paper)</th><th>paper: KLIP</th><th>paper: previous best</th>"
            "<th>this run: task</th><th>this run: klip [95% CI]</th><th>this run: best other</th>"
            "<th>KLIP minus best other: paper / this run</th><th>what differs</th></tr>")
    body = []
    for r in ledger_rows(metrics, claims):
        ci = f" [{r['ours_ci'][0]:.1f}, {r['ours_ci'][1]:.1f}]" if r["ours_ci"] else " [—]"
        other = f"{fmt(r['best_other'])} ({e(r['best_other_name'])})" if r["best_other_name"] else "—"
        block = e(r["block"]) if r["block"] else "—"
        gain = "—" if r["ours"] is None or r["best_other"] is None else f"{r['ours'] - r['best_other']:+.1f}"
        cls = "same" if r["same_data"] != "no" and r["block"] else "differ"
        body.append(f"<tr class='{cls}'><td>{e(r['task'])}</td><td>{e(r['dataset'])}</td><td>{r['paper']:g}</td>"
                    f"<td>{r['previous_best']:g}</td><td>{block}</td><td>{fmt(r['ours'])}{ci if r['block'] else ''}</td>"
                    f"<td>{other}</td><td>{r['paper_gain']:+g} / {gain}</td><td><small>{e(r['differs'])}</small></td></tr>")
    sources = sorted({r["source"] for r in ledger_rows(metrics, claims)})
    return ("<h2 id='ledger'>Claims ledger: the paper's headline results beside this run</h2>"
            "<p>Paper values " + "; ".join(e(s) for s in sources) + ". This run's numbers are on the paper's 0-100 "
            "scale (fractions x 100, CIDEr x 100). A row that says <i>not run on the same data</i> puts the nearest "
            "task of this run beside the paper's number: the two are not comparable, only the ordering against "
            f"the other models is.</p><table class='ledger'>{head}{''.join(body)}</table>")
