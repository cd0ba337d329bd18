"""SCIO's error-injection harness: plant realistic mistakes in simulated captions, keep the truth, and score
screening (precision, recall, F1 per error kind) and reconstruction (corrupted clauses restored to a true
statement, true clauses damaged), for SCIO and the baselines (random flagging, whole-caption ITM filter)."""

from __future__ import annotations

import dataclasses

import numpy as np

from .scio import Item
from .scio.errors import ERROR_KINDS, clause_true, corrupt, inject_errors, wrong_labels  # noqa: F401 (re-exported)
from .scio.screening import F1_TIE, f1_sweep


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": tp + fn}


def screening_metrics(items: list[Item], flags: list[list[bool]], wrong: list[list[bool]]) -> dict:
    """Precision, recall and F1 of flags against wrong clauses, overall and per error kind (by dimension)."""
    rows = [(c.dim, f, w) for it, fs, ws in zip(items, flags, wrong) for c, f, w in zip(it.truth, fs, ws)]
    out = {"all": _prf(sum(f and w for _, f, w in rows), sum(f and not w for _, f, w in rows),
                       sum(w and not f for _, f, w in rows))}
    for kind, dim in ERROR_KINDS.items():
        sel = [(f, w) for d, f, w in rows if d == dim]
        out[kind] = _prf(sum(f and w for f, w in sel), sum(f and not w for f, w in sel),
                         sum(w and not f for f, w in sel))
    out["flag_rate"] = float(np.mean([f for _, f, _ in rows])) if rows else 0.0
    out["error_rate"] = float(np.mean([w for _, _, w in rows])) if rows else 0.0
    return out


def reconstruction_metrics(before: list[Item], after: list[Item], facts: dict[str, dict]) -> dict:
    """Share of wrong clauses made true, share of true clauses made wrong, share of clauses edited."""
    wrong_b, wrong_a = wrong_labels(before, facts), wrong_labels(after, facts)
    pairs = [(b, a) for wb, wa in zip(wrong_b, wrong_a) for b, a in zip(wb, wa)]
    n_wrong = sum(b for b, _ in pairs)
    n_true = len(pairs) - n_wrong
    edited = sum(cb.body != ca.body for ib, ia in zip(before, after) for cb, ca in zip(ib.clauses, ia.clauses))
    return {"restored": sum(b and not a for b, a in pairs) / n_wrong if n_wrong else 0.0,
            "damaged": sum(a and not b for b, a in pairs) / n_true if n_true else 0.0,
            "edited": edited / len(pairs) if pairs else 0.0, "wrong_before": n_wrong, "true_before": n_true}


def random_flags(items: list[Item], rate: float, seed: int) -> list[list[bool]]:
    """Baseline: each clause flagged with probability `rate` (SCIO's flag rate)."""
    rng = np.random.default_rng(seed)
    return [list(rng.random(len(it.clauses)) < rate) for it in items]


def capfilt_flags(whole_itm: list[float], threshold: float, items: list[Item]) -> list[list[bool]]:
    """Baseline (BLIP CapFilt): a view whose whole-text ITM probability is below threshold is dropped whole."""
    return [[p < threshold] * len(it.clauses) for p, it in zip(whole_itm, items)]


def capfilt_threshold(itm: np.ndarray, items: list[Item], wrong: list[list[bool]]) -> float:
    """The whole-view ITM threshold that maximises clause-level F1 on held-out items (a view below it is flagged
    whole; among tied F1 the highest threshold, which flags the most)."""
    score = -np.repeat(np.asarray(itm, dtype=float), [len(it.clauses) for it in items])  # flag: -itm >= -t
    f1, thresholds = f1_sweep(score, np.concatenate([np.asarray(w, dtype=bool) for w in wrong]))
    return -float(thresholds[np.flatnonzero(f1 >= f1.max() - F1_TIE)[0]]) + 1e-9


def run_harness(shard_dir, captions, out_dir, preset: str = "smoke", seed: int = 0, rate: float = 0.5, cfg=None,
                copies: int = 3) -> list[dict]:
    """SCIO on the training split's captions (`captions`, a JSONL file of the tiles in `shard_dir`) with `rate` of the eligible clauses corrupted; per round, screening
    and reconstruction metrics for SCIO, random flagging at SCIO's rate and the whole-caption ITM filter.

    Each training caption appears `copies` times, corrupted independently, as when an LLM captions a tile
    several times and its hallucinations differ from one caption to the next while the truth stays: the
    self-consistency SCIO relies on (with one caption per tile, a tiny corpus is memorised, errors included).
    """
    from .hcot.generate import read_captions
    from .scio import ScioConfig, agreement, default_steps, load_scio_data, reconstruct, run_rounds
    from .train import configs_for

    model_config, train_cfg = configs_for(preset, objective="klip", seed=seed)
    cfg = cfg or ScioConfig(steps=default_steps(train_cfg.steps))
    data = load_scio_data(shard_dir, read_captions(captions), model_config, cfg, seed)
    data.train = [it for c in range(copies) for it in inject_errors(data.train, data.facts, rate, seed + 100 * c)]
    wrong_heldout = wrong_labels(data.heldout, data.facts)

    def on_round(name, model, items, fixed, scores, screener):
        wrong = wrong_labels(items, data.facts)
        flags = [it.flagged for it in items]
        scio = {**screening_metrics(items, flags, wrong), **reconstruction_metrics(items, fixed, data.facts)}
        rate_ = scio["flag_rate"]
        draws = [random_flags(items, rate_, seed + d) for d in range(5)]
        rnd = [screening_metrics(items, f, wrong) for f in draws]
        random_ = {k: {m: float(np.mean([r[k][m] for r in rnd])) for m in rnd[0][k]} for k in rnd[0] if k in ERROR_KINDS
                   or k == "all"}
        shuffled = [dataclasses.replace(it, flagged=f) for it, f in zip(items, draws[0])]
        random_.update(reconstruction_metrics(items, reconstruct(model, data.images, shuffled, screener,
                                                                 *scores, cfg.top_k, cfg.margin), data.facts))
        whole = lambda its: agreement(model, data.images, [i.row for i in its], [i.text() for i in its])[1]  # noqa: E731
        threshold = capfilt_threshold(whole(data.heldout), data.heldout, wrong_heldout)
        cf_flags = capfilt_flags(list(whole(items)), threshold, items)
        capfilt = {**screening_metrics(items, cf_flags, wrong), "restored": 0.0, "damaged": 0.0,
                   "dropped_true": float(np.mean([f and not w for fs, ws in zip(cf_flags, wrong) for f, w in zip(fs, ws)]))}
        return {"scio": scio, "random": random_, "capfilt": capfilt}

    _, log = run_rounds(data, out_dir, model_config, train_cfg, cfg, on_round=on_round)
    return log


METHODS = ("scio", "random", "capfilt")


def rounds_table(log: list[dict]) -> list[dict]:
    """One row per (round, method): overall precision, recall, F1, restored and damaged shares."""
    return [{"round": r["round"], "method": m, **{k: r[m]["all"][k] for k in ("precision", "recall", "f1")},
             "restored": r[m]["restored"], "damaged": r[m]["damaged"]} for r in log for m in METHODS]


def kinds_table(row: dict, method: str = "scio") -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per error kind of one round."""
    return {k: row[method][k] for k in ERROR_KINDS}


def plot_rounds(log: list[dict], save_to=None):
    """Per round: screening F1 of each method, and SCIO's and random flagging's restored / damaged shares."""
    import matplotlib.pyplot as plt

    names = [r["round"] for r in log]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
    for m in METHODS:
        a.plot(names, [r[m]["all"]["f1"] for r in log], marker="o", label=m)
    a.set_title("screening F1 (planted errors)")
    a.legend()
    for m in ("scio", "random"):
        b.plot(names, [r[m]["restored"] for r in log], marker="o", label=f"{m} restored")
        b.plot(names, [r[m]["damaged"] for r in log], marker="x", linestyle="--", label=f"{m} damaged")
    b.set_title("reconstruction")
    b.legend()
    if save_to:
        fig.savefig(save_to, dpi=100)
    return fig
