"""`klip run`: execute notebooks/NN_*.ipynb in order with Papermill into reports/<run>/.

Each notebook gets `run_dir`, `preset` and `seed`; its executed copy goes to `<run>/notebooks/`, an HTML
rendering to `<run>/html/`, its metrics (saved by the notebook) to `<run>/metrics/`. The runner then writes
`<run>/metrics.json` (all merged), `<run>/run.json` (status and duration per notebook) and `<run>/index.html`
(with the report notebook's section: comparison, claims ledger, links to the task pages in `<run>/tasks/`),
and points `reports/latest` at the run. A failing notebook stops the run with its name, the failing cell and
where the executed copy with the traceback is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import paths
from .files import write_json_atomic
from .presets import UnknownPresetError, get_preset, notebook_parameters
from .report import load_metrics

REPORT_SECTION = "report_section.html"
KERNEL_NAME = "klip"  # registered for the project's venv by `make` (python -m ipykernel install --sys-prefix)
NOTEBOOK_RE = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


class RunError(Exception):
    """A problem that stops `klip run` with a one-line message (and exit code 2)."""


@dataclass
class NotebookResult:
    number: str  # "03"
    name: str  # "03_hcot_captions"
    status: str = "pending"  # pending | ok | failed
    seconds: float = 0.0  # wall time of the execution
    error: str = ""  # "cell 7: ValueError: ..." when failed
    executed: str = ""  # executed notebook, relative to the run folder
    html: str = ""  # its HTML rendering, relative to the run folder


@dataclass
class RunRecord:
    name: str
    preset: str
    seed: int
    started: str
    notebooks: list[NotebookResult] = field(default_factory=list)
    seconds: float = 0.0


def read_record(run_dir: Path) -> RunRecord | None:
    """The record `run` wrote as `run_dir/run.json` (None where there is none); a file that is not one raises
    RunError naming it."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return RunRecord(**{**raw, "notebooks": [NotebookResult(**r) for r in raw.get("notebooks", [])]})
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise RunError(f"{path}: not a run record of `klip run` ({e}): remove it or pass another run folder") from e


def discover(folder: Path = paths.NOTEBOOKS) -> dict[str, Path]:
    """The project's notebooks by number, in order."""
    found = {}
    for p in sorted(folder.glob("*.ipynb")):
        m = NOTEBOOK_RE.match(p.name)
        if m:
            found[m.group(1)] = p
    return found


def select(available: dict[str, Path], only: list[str] | None, start: str | None) -> list[Path]:
    """The notebooks to run; an unknown number is an error naming the known ones."""
    def norm(n: str) -> str:
        return n.zfill(2) if n.isdigit() else n

    wanted = [norm(n) for n in (only or [])] + ([norm(start)] if start else [])
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise RunError(f"no notebook numbered {', '.join(unknown)} "
                       f"(have {', '.join(available) or 'none'})")
    numbers = [n for n in available if (not only or n in {norm(o) for o in only}) and (not start or n >= norm(start))]
    return [available[n] for n in numbers]


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder and prove it can be written, before any notebook runs."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write the run folder {run_dir}: {e.strerror or e}") from None


def failure_summary(executed: Path, exc: Exception) -> str:
    """'cell N: Error: message', N counting the cells of the source notebook from 1 (Papermill's
    injected-parameters cell in the executed copy is not counted)."""
    import nbformat

    cell = getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    first_line = str(evalue).strip().splitlines()[0] if str(evalue).strip() else ""
    if cell is None or not executed.exists():
        return f"a cell: {ename}: {first_line}"
    cells = [c for c in nbformat.read(executed, as_version=4).cells  # as executed: without the error banners
             if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:cell])
    return f"cell {cell + 1 - injected}: {ename}: {first_line}"


def render_html(executed: Path, out: Path, assets: Path | None = None) -> None:
    """The executed notebook as HTML that loads nothing from a CDN (`offline.render_notebook_html`; its widget
    scripts go to `assets`, by default `<run>/assets`). Without the vendored scripts (`python -m klip_lib.vendor`)
    it falls back to nbconvert's default page, whose widgets need the internet, and says so."""
    from . import offline, vendor

    try:
        offline.render_notebook_html(executed, out, assets or out.parent.parent / offline.ASSETS)
    except vendor.VendorMissing as e:
        from nbconvert import HTMLExporter

        print(f"  ({out.name}: widgets will need the internet: {e})", file=sys.stderr)
        body, _ = HTMLExporter().from_filename(str(executed))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(body)


def declares(nb: Path, name: str) -> bool:
    """Whether a notebook's parameters cell sets `name`."""
    cells = json.loads(nb.read_text()).get("cells", [])
    return any("parameters" in c.get("metadata", {}).get("tags", []) and
               any(line.startswith(f"{name} =") for line in "".join(c["source"]).splitlines()) for c in cells)


def execute(nb: Path, run_dir: Path, preset: str, seed: int, kernel: str, source: str = "",
            add_simulated: bool = False) -> NotebookResult:
    """Run one notebook with Papermill; never raises for a failing cell (the result says). `source` (a folder
    to import as the run's dataset) and `add_simulated` (the preset's simulated tiles join the imported ones) go to
    the notebooks whose parameters declare them."""
    import papermill as pm

    result = NotebookResult(number=nb.name[:2], name=nb.stem)
    executed = run_dir / "notebooks" / nb.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    result.executed = str(executed.relative_to(run_dir))
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb), str(executed), cwd=str(nb.parent), kernel_name=kernel, progress_bar=False,
            parameters={"run_dir": str(run_dir), "preset": preset, "seed": seed, **notebook_parameters(preset, nb.stem),
                        **({"source": source} if source and declares(nb, "source") else {}),
                        **({"add_simulated": True} if add_simulated and declares(nb, "add_simulated") else {})},
        )
        result.status = "ok"
    except Exception as e:  # Papermill wraps cell errors; anything else (kernel died) is a failure too
        result.status, result.error = "failed", failure_summary(executed, e)
    result.seconds = round(time.perf_counter() - t0, 2)
    if executed.exists():
        html_path = run_dir / "html" / f"{nb.stem}.html"
        try:
            render_html(executed, html_path)
            result.html = str(html_path.relative_to(run_dir))
        except Exception as e:  # a rendering problem must not hide the notebook's own result
            print(f"  (could not render {nb.name} to HTML: {e})", file=sys.stderr)
    return result


def flat_scalars(d: dict, prefix: str = "") -> dict[str, object]:
    """Flatten nested metrics to 'a.b.c' -> scalar, for the index table."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_scalars(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def write_index(run_dir: Path, record: RunRecord, metrics: dict[str, dict]) -> Path:
    """A plain HTML page: one row per notebook with status, duration, link and its metrics."""
    rows = []
    for r in record.notebooks:
        m = flat_scalars(metrics.get(r.name, {}))
        shown = "".join(
            f"<li><code>{html.escape(k)}</code>: {html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</li>"
            for k, v in list(m.items())[:40]
        ) + (f"<li>... {len(m) - 40} more in metrics.json</li>" if len(m) > 40 else "")
        link = f'<a href="{html.escape(r.html)}">{html.escape(r.name)}</a>' if r.html else html.escape(r.name)
        err = f"<br><small>{html.escape(r.error)}</small>" if r.error else ""
        rows.append(f"<tr class='{r.status}'><td>{link}</td><td>{r.status}{err}</td>"
                    f"<td>{r.seconds:.1f} s</td><td><ul>{shown}</ul></td></tr>")
    section = run_dir / REPORT_SECTION  # written by the report notebook: radar chart, table, provenance
    extra = section.read_text() if section.exists() else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>KLIP run {html.escape(record.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
table{{border-collapse:collapse}}tr.failed{{background:#fdd}}tr.ok td:nth-child(2){{color:#070}}ul{{margin:0}}</style>
</head><body><h1>KLIP run <code>{html.escape(record.name)}</code></h1>
<p>preset <b>{html.escape(record.preset)}</b>, seed {record.seed}, started {html.escape(record.started)},
{record.seconds:.1f} s in all. All metrics: <a href="metrics.json">metrics.json</a>.</p>{extra}
<table><tr><th>notebook</th><th>status</th><th>duration</th><th>metrics</th></tr>
{''.join(rows)}</table></body></html>"""
    out = run_dir / "index.html"
    out.write_text(page)
    return out


def point_latest(run_dir: Path) -> None:
    """<reports>/latest -> this run (a relative symlink, replaced atomically)."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)


def run(preset: str = "smoke", seed: int = 0, only: list[str] | None = None, start: str | None = None,
        name: str | None = None, kernel: str = KERNEL_NAME, notebooks_dir: Path = paths.NOTEBOOKS,
        reports_dir: Path = paths.REPORTS, source: str = "", add_simulated: bool = False) -> RunRecord:
    """Run the selected notebooks; raises RunError on bad arguments or a failing notebook."""
    if add_simulated and not source:
        raise RunError("--add-simulated adds the preset's simulated tiles to imported ones: give --source too")
    try:
        get_preset(preset)
    except UnknownPresetError as e:
        raise RunError(str(e)) from None
    chosen = select(discover(notebooks_dir), only, start)
    if not chosen:
        raise RunError(f"no notebooks to run in {notebooks_dir}")
    if add_simulated:  # a notebook importing `source` without it would rebuild the imported-only dataset
        blind = [nb.name for nb in chosen if declares(nb, "source") and not declares(nb, "add_simulated")]
        if blind:
            raise RunError(f"{', '.join(blind)} take source but not add_simulated: declare add_simulated in their "
                           "parameters cell, or run without --add-simulated")
    for nb in chosen:
        unknown = [p for p in notebook_parameters(preset, nb.stem) if not declares(nb, p)]
        if unknown:
            raise RunError(f"{nb}: preset {preset!r} sets {', '.join(unknown)}, which its parameters cell does not "
                           "declare; fix the preset's `notebooks` section (klip_lib/presets.py)")
    name = name or dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    if "/" in name or name in {"", ".", "..", "latest"}:
        raise RunError(f"bad run name {name!r}: use a plain folder name")
    run_dir = Path(reports_dir) / name
    prepare_run_dir(run_dir)

    record = RunRecord(name=name, preset=preset, seed=seed, started=dt.datetime.now().isoformat(timespec="seconds"))
    previous = read_record(run_dir)
    if previous:  # re-running some notebooks into an existing run keeps the others' rows
        record.notebooks = [r for r in previous.notebooks if r.name not in {nb.stem for nb in chosen}]
    t_run = time.perf_counter()
    failed = None
    for i, nb in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {nb.stem} ...", flush=True)
        result = execute(nb, run_dir, preset, seed, kernel, source, add_simulated)
        record.notebooks.append(result)
        write_json_atomic(run_dir / "run.json", asdict(record))  # so far: the report notebook reads the timings
        print(f"[{i}/{len(chosen)}] {nb.stem} {result.status} in {result.seconds:.1f} s", flush=True)
        if result.status != "ok":
            failed = result
            break
    record.notebooks.sort(key=lambda r: r.number)
    record.seconds = round(time.perf_counter() - t_run, 2)
    metrics = load_metrics(run_dir)
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_json_atomic(run_dir / "run.json", asdict(record))
    index = write_index(run_dir, record, metrics)
    point_latest(run_dir)
    if failed:
        raise RunError(f"notebook {failed.name}.ipynb failed in {failed.error}\n"
                       f"  executed copy with the traceback: {run_dir / failed.executed}")
    print(f"done: {index}")
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="smoke", help="smoke (CPU, minutes; default), study (2 CPU cores, about an hour) or gpu")
    parser.add_argument("--seed", type=int, default=0, help="seed passed to every notebook (default 0)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook numbers")
    parser.add_argument("--from", dest="start", metavar="NN", help="run from this notebook number on")
    parser.add_argument("--name", help="run folder name under reports/ (default run-<date>-<time>)")
    parser.add_argument("--kernel", default=KERNEL_NAME, help=f"Jupyter kernel (default {KERNEL_NAME})")
    parser.add_argument("--source", default="", help="a folder of your rasters (GeoTIFFs, chips, SAFE, zips) to "
                        "import as the run's dataset instead of simulating one")
    parser.add_argument("--add-simulated", action="store_true", help="with --source: the preset's simulated tiles "
                        "join the imported ones in one dataset (pretraining on real and simulated tiles mixed)")


def main(args: argparse.Namespace) -> int:
    try:
        run(preset=args.preset, seed=args.seed, only=args.only, start=args.start, name=args.name,
            kernel=args.kernel, source=str(paths.resolve(args.source)) if args.source else "",
            add_simulated=args.add_simulated)
    except RunError as e:
        print(f"klip run: {e}", file=sys.stderr)
        return 1 if "failed in" in str(e) else 2
    return 0
