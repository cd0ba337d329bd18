"""One HTML page per task in the run folder (`tasks/<task>.html`): its figures, a table of the models' and baselines'
rows with the headline's 95% interval where the block carries one, and the data each dataset was scored on."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from .ledger import data_label, test_size
from .paths import resolve
from .report import BASELINE_MODELS, baselines, interval

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1100px}td,th{border:1px solid #ccc;padding:3px 8px}"
         "table{border-collapse:collapse;margin:0.5em 0 1.5em}tr.baseline{color:#555;font-style:italic}"
         "td.best{font-weight:bold}img{max-width:100%}")


def blocks_by_task(metrics: dict[str, dict]) -> dict[str, list[tuple[str, str, dict]]]:
    """Task -> [(notebook stem, block name, block)], from every notebook's metrics (as `report.task_blocks`)."""
    out: dict[str, list[tuple[str, str, dict]]] = {}
    for stem, m in sorted(metrics.items()):
        found = ({n: b for n, b in m["tasks"].items() if isinstance(b, dict) and "models" in b}
                 if isinstance(m.get("tasks"), dict) else {m.get("task", stem): m} if "models" in m and "headline" in m
                 else {})
        for name, block in found.items():
            out.setdefault(block.get("task", name.split("/")[0]), []).append((stem, name, block))
    return out


def slug(task: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", task.lower()).strip("_") or "task"


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def block_table(block: dict) -> str:
    """Rows: models, then baselines (the random-init control counts as one); columns: the scalar metrics, the
    headline first, and the headline's 95% interval ("—" where the block has none)."""
    head = block["headline"]
    rows = [(n, "baseline" if n in BASELINE_MODELS else "model", s) for n, s in block["models"].items()]
    rows += [(n, "baseline", s) for n, s in baselines(block).items()]
    keys = [head] + sorted({k for _, _, s in rows if isinstance(s, dict) for k, v in s.items()
                            if k != head and isinstance(v, (int, float)) and not isinstance(v, bool)})
    values = [v for _, _, s in rows if isinstance(v := (s or {}).get(head), (int, float))]
    best = (max if block.get("higher_is_better", True) else min)(values) if values else None
    out = ["<table><tr><th>name</th><th>kind</th>"
           + "".join(f"<th>{html.escape(k)}{' (headline)' if k == head else ''}</th>" for k in keys)
           + f"<th>{html.escape(head)} 95% CI</th></tr>"]
    for name, kind, scores in rows:
        scores = scores if isinstance(scores, dict) else {}
        ci = interval(block, name)
        cells = "".join(f"<td{' class=best' if k == head and scores.get(k) == best else ''}>{_cell(scores.get(k))}</td>"
                        for k in keys)
        out.append(f"<tr class='{kind}'><td>{html.escape(name)}</td><td>{kind}</td>{cells}"
                   f"<td>{'—' if ci is None else f'[{ci[0]:.3f}, {ci[1]:.3f}]'}</td></tr>")
    return "".join(out) + "</table>"


def task_page(task: str, entries: list[tuple[str, str, dict]], figures: list[str]) -> str:
    """The HTML of one task's page; `figures` are paths relative to the page."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(task)}</title><style>{STYLE}</style>"
             f"</head><body><p><a href='../index.html'>run index</a></p><h1>Task: {e(task)}</h1>"]
    for _stem, name, block in entries:
        lower = "" if block.get("higher_is_better", True) else " (lower is better)"
        parts.append(f"<h2 id='{slug(name)}'>{e(name)}</h2><p>Data: {e(data_label(name))}; size: "
                     f"{e(test_size(block))}; scored on split: {e(str(block.get('split', 'test')))}. "
                     f"Headline: <b>{e(block['headline'])}</b>{lower}.</p>{block_table(block)}")
    parts += [f"<figure><img src='{e(f)}' alt='{e(Path(f).stem)}'><figcaption>{e(Path(f).name)}</figcaption></figure>"
              for f in figures]
    return "".join(parts) + "</body></html>"


def write_task_pages(run_dir: str | os.PathLike, metrics: dict[str, dict]) -> dict[str, str]:
    """Write `tasks/<task>.html` for every task in the run's metrics; returns {task: path relative to run_dir}.
    A task's figures are the PNGs its notebook saved in `figures/` (named after the notebook number)."""
    run_dir = resolve(run_dir)  # a relative run folder is the project's, wherever the kernel runs
    written = {}
    for task, entries in sorted(blocks_by_task(metrics).items()):
        numbers = sorted({stem[:3] for stem, _, _ in entries if re.match(r"\d\d_", stem)})
        figures = [f"../figures/{p.name}" for n in numbers for p in sorted((run_dir / "figures").glob(f"{n}*.png"))]
        out = run_dir / "tasks" / f"{slug(task)}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(task_page(task, entries, figures))
        written[task] = str(out.relative_to(run_dir))
    return written


def links_html(pages: dict[str, str]) -> str:
    """The index.html list of task pages."""
    items = "".join(f"<li><a href='{html.escape(p)}'>{html.escape(t)}</a></li>" for t, p in pages.items())
    return f"<h2>Task pages</h2><ul>{items}</ul>" if pages else \
        "<h2>Task pages</h2><p>none: no evaluation notebook (05-11) saved a task in this run.</p>"
