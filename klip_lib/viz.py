"""Plots: SAR display (dB stretch, dual-pol false colour) and tile grids. matplotlib is imported inside.

Interactive maps (leafmap layers, the ipywidgets explorer) are in `klip_lib.maps` and `klip_lib.map_explorer`."""

from __future__ import annotations

import numpy as np


def db_stretch(db: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map dB values to [0, 1] between the `low` and `high` percentiles (NaN -> 0)."""
    lo, hi = np.nanpercentile(db, [low, high]) if np.isfinite(db).any() else (0.0, 1.0)
    return np.nan_to_num(np.clip((db - lo) / max(hi - lo, 1e-6), 0, 1))


def sar_rgb(bands: np.ndarray) -> np.ndarray:
    """[H, W, 3] display image from [C, H, W] dB bands: grey for one band; for dual pol the usual false
    colour R = co-pol, G = cross-pol, B = co - cross (each stretched)."""
    if len(bands) == 1:
        return np.repeat(db_stretch(bands[0])[..., None], 3, axis=-1)
    co, cross = bands[0], bands[1]
    return np.stack([db_stretch(co), db_stretch(cross), db_stretch(co - cross)], axis=-1)


def show_tiles(tiles: list[np.ndarray], titles: list[str] | None = None, cols: int = 4, size: float = 2.6):
    """A grid of SAR tiles ([C, H, W] dB each) through `sar_rgb`; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(tiles) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, tile in enumerate(tiles):
        ax = axes.ravel()[i]
        ax.imshow(sar_rgb(tile))
        if titles:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def unbeaten_axes(scores, baselines=None, baseline_rows=("random",)) -> list[str]:
    """Axes (columns) where no model beats a baseline: the best of the models not in `baseline_rows` is not above
    the best of `baselines` (rows: baselines, same columns) and the `baseline_rows` models (the random-init control)."""
    import pandas as pd

    frames = [scores.loc[[r for r in scores.index if r in baseline_rows]]]
    if baselines is not None and len(baselines):
        frames.append(baselines.reindex(columns=scores.columns))
    base = pd.concat(frames).max(axis=0)
    models = scores.loc[[r for r in scores.index if r not in baseline_rows]].max(axis=0)
    return [c for c in scores.columns if pd.notna(base[c]) and (pd.isna(models[c]) or models[c] <= base[c])]


def radar_chart(scores, title: str = "", save_to=None, baselines=None, methods=None, baseline_rows=("random",)):
    """A radar chart of models (rows) over task axes (columns) of a DataFrame, each axis normalised by its best
    model or baseline (1 = best on that axis, as in the paper's comparison figure); missing scores at 0.

    Baselines (`baselines` rows and the `baseline_rows` models, e.g. the random-init control) are drawn dashed;
    an axis where no model beats a baseline is marked in red with "x". `methods` (rows: methods such as SCIO,
    CapFilt, random flagging; columns: their metrics) are drawn apart, as bars beside the radar."""
    import matplotlib.pyplot as plt
    import pandas as pd

    axes_names = list(scores.columns)
    base = baselines.reindex(columns=axes_names) if baselines is not None and len(baselines) else None
    both = pd.concat([scores, base]) if base is not None else scores
    best = both.max(axis=0).replace(0, np.nan)
    unbeaten = set(unbeaten_axes(scores, base, baseline_rows))
    angles = np.linspace(0, 2 * np.pi, len(axes_names), endpoint=False).tolist()
    with_methods = methods is not None and len(methods) and methods.shape[1]
    fig = plt.figure(figsize=(12 if with_methods else 7, 7))
    ax = fig.add_subplot(1, 2 if with_methods else 1, 1, polar=True)
    rows = [(n, r, n in baseline_rows) for n, r in scores.iterrows()]
    rows += [(n, r, True) for n, r in base.iterrows()] if base is not None else []
    for name, row, is_baseline in rows:
        values = (row / best).fillna(0.0).clip(lower=0).tolist()
        closed = angles + angles[:1], values + values[:1]
        if is_baseline:
            ax.plot(*closed, label=f"{name} (baseline)", linestyle="--", linewidth=1.2)
        else:
            ax.plot(*closed, label=name, linewidth=1.8)
            ax.fill(*closed, alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels([("x " if a in unbeaten else "") + a.replace("/", "\n") for a in axes_names], fontsize=8)
    for label, name in zip(ax.get_xticklabels(), axes_names):
        if name in unbeaten:
            label.set_color("#c00000")
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_title(title or "normalised per axis (1 = best)\nred x: no model beats a baseline", pad=24, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=8)
    if with_methods:
        mx = fig.add_subplot(1, 2, 2)
        methods.T.plot.barh(ax=mx)
        mx.set_title("methods (not models), raw scores", fontsize=10)
        mx.legend(fontsize=8)
    fig.tight_layout()
    if save_to:
        fig.savefig(save_to, dpi=110, bbox_inches="tight")
    return fig


def error_bars(values: list, intervals: list) -> np.ndarray | None:
    """matplotlib's asymmetric yerr [2, n] (value - low, high - value) from (low, high) pairs; NaN where a value
    or its interval is missing (no bar drawn), None when there is no interval at all."""
    if not any(ci is not None for ci in intervals):
        return None
    err = np.full((2, len(values)), np.nan)
    for j, (v, ci) in enumerate(zip(values, intervals)):
        if v is not None and ci is not None and None not in ci:
            err[:, j] = [max(v - ci[0], 0.0), max(ci[1] - v, 0.0)]
    return err


def grouped_bars(groups: dict[str, dict[str, float]], title: str = "", ylabel: str = "", save_to=None,
                 categories: list[str] | None = None, ylim: tuple[float, float] | None = None,
                 intervals: dict[str, dict[str, tuple[float, float]]] | None = None):
    """Bars of several series (e.g. models, or L0 / HCoT / HCoT+L5) over shared categories, in the order given
    (default: sorted); a missing or None value leaves a gap. `intervals` ({series: {category: (low, high)}},
    e.g. 95% bootstrap intervals) draws error bars where given."""
    import matplotlib.pyplot as plt

    categories = categories or sorted({c for series in groups.values() for c in series})
    width = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(categories) * max(1, len(groups)) ** 0.5), 3.6),
                           constrained_layout=True)
    for i, (name, series) in enumerate(groups.items()):
        xs = np.arange(len(categories)) + (i - (len(groups) - 1) / 2) * width
        values = [series.get(c) for c in categories]
        yerr = error_bars(values, [(intervals or {}).get(name, {}).get(c) for c in categories])
        ax.bar(xs, [np.nan if v is None else v for v in values], width, label=name, yerr=yerr,
               error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "0.2"})
    ax.set_xticks(np.arange(len(categories)))
    ax.set_xticklabels(categories, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    if save_to:
        fig.savefig(save_to, dpi=110)
    return fig


def headline_bars(blocks: dict[str, dict], title: str = "", save_to=None):
    """Each task block's headline per model (and its `baseline`/`baselines`, where it has them) as bars over the tasks, with the
    blocks' 95% intervals (`ci`) as error bars and each task's test-set size under its name."""
    groups: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    categories = []
    for name, block in blocks.items():
        key, label = block["headline"], f"{name}\n{block['headline']} (n={block.get('n_test', '?')})"
        categories.append(label)
        rows = {m: s.get(key) for m, s in block["models"].items()}
        if isinstance(block.get("baseline"), dict) and block["baseline"].get("name"):
            rows[block["baseline"]["name"]] = block["baseline"].get(key)
        rows.update({b: s.get(key) for b, s in (block.get("baselines") or {}).items() if isinstance(s, dict)})
        for m, v in rows.items():
            groups.setdefault(m, {})[label] = v
            if (block.get("ci") or {}).get(m) is not None:
                intervals.setdefault(m, {})[label] = tuple(block["ci"][m])
    return grouped_bars(groups, title or "headline with 95% bootstrap interval", "score", save_to=save_to,
                        categories=categories, intervals=intervals)
