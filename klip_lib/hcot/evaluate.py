"""Measured caption accuracy: an LLM at L0 vs the HCoT chain vs HCoT + L5 calibration, and the chart of it."""

from __future__ import annotations

import os
from pathlib import Path

from ..vocab import CAPTION_DIMENSIONS
from .factcheck import accuracy
from .generate import MALFORMED_NOTE, caption_batch


def compare_levels(facts_list: list[dict], backend, dimensions: tuple[str, ...] = CAPTION_DIMENSIONS,
                   seed: int = 0, retries: int = 1) -> dict:
    """Per-dimension accuracy of one backend on the same tiles: "L0" (metadata-only prompt), "HCoT" (the
    L1..L4 prompt's draft, before calibration) and "HCoT+L5" (after calibration), over `dimensions`.

    Returns {"accuracy": {condition: {dim: acc}}, "mean": {condition: mean acc}, "records": {"L0": [...],
    "L5": [...]}, "repaired": how many of the asked dimensions L5 changed, "answered": {"L0": share of tiles
    whose answer was valid JSON, "HCoT": the same for the L1..L4 drafts}}. An answer that fails or does not
    parse counts as wrong on every dimension that applies, in each condition alike.
    """
    l5 = caption_batch(facts_list, backend, "L5", seed, retries)
    l0 = caption_batch(facts_list, backend, "L0", seed, retries)
    drafts = [{"factcheck": r["draft_factcheck"]} for r in l5 if r["status"] == "ok"]
    acc = {"L0": accuracy(l0), "HCoT": accuracy(drafts), "HCoT+L5": accuracy(l5)}
    acc = {c: {d: a[d] for d in dimensions} for c, a in acc.items()}
    mean = {c: _mean(a.values()) for c, a in acc.items()}
    repaired = sum(r["draft_factcheck"][d] is False for r in l5 if r["status"] == "ok" for d in dimensions)
    n = max(1, len(facts_list))
    parsed = sum(r["status"] == "ok" and not any(c.startswith(MALFORMED_NOTE) for c in r.get("calibration", []))
                 for r in l5)
    answered = {"L0": sum(r["status"] == "ok" for r in l0) / n, "HCoT": parsed / n}
    return {"accuracy": acc, "mean": mean, "records": {"L0": l0, "L5": l5}, "repaired": repaired,
            "answered": answered}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def plot_accuracy(acc_by_condition: dict[str, dict[str, float | None]], path: str | os.PathLike | None = None,
                  title: str = "Per-dimension caption accuracy (fact-checked)"):
    """Grouped bars of per-dimension accuracy, one group per dimension and one bar per condition.
    Saved as PNG when `path` is given; returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    dims = [d for d in CAPTION_DIMENSIONS if any(a.get(d) is not None for a in acc_by_condition.values())]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(dims) + 2), 3.5))
    width = 0.8 / max(1, len(acc_by_condition))
    for i, (name, acc) in enumerate(acc_by_condition.items()):
        values = [acc.get(d) if acc.get(d) is not None else np.nan for d in dims]
        ax.bar(np.arange(len(dims)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(dims)) + width * (len(acc_by_condition) - 1) / 2, dims, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig
