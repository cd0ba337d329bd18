"""SCIO's error-injection harness (evaluation code: nothing in the training path imports it).

Plant known mistakes in simulated captions, keep the truth, let each SCIO strategy screen a model trained on them and score
screening (precision, recall, F1 overall and per error kind, with 95% bootstrap intervals over tiles) and
reconstruction (wrong clauses restored, true clauses damaged) against random flagging at the strategy's flag rate
and the whole-caption ITM filter (BLIP's CapFilt); plus the damage the strategy does to clean captions (the share
of true clauses it flags when no error was planted) and a clause-level audit table.

Noise profiles (`NOISE_PROFILES`, share of the eligible clauses of each error kind made wrong):

- `expert`: like the paper's expert sampling of LLM captions, where roughly 64% to 90% of the statements per
  dimension were correct, counting and aircraft recognition least accurate and landform most. Ours: count 36%
  wrong, target type 34% (our type errors swap a ship or aircraft type for another of its group), position 22%,
  water 12%, terrain (landform) 10%. These are our reading of the paper's ranges, not its table.
- `stress`: 50% of every kind (the earlier setting: far more errors than any captioner makes).

A noise source that is not ours (`draft_corpus`, `noise="llm"`): an LLM's HCoT drafts before L5 (a captions JSONL
written at level L4, e.g. `klip caption --backend transformers --level L4 --split train`). Each training caption keeps
the template's text for the dimensions the draft left out (as L5 would fill them) and takes the draft's own text
for every dimension it wrote; the fact-checker says which of those are wrong (`scio.errors.dimension_wrong`), so
the errors are the LLM's, at its own rate and in its own words, and not planted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import InputError
from .evidence import mean_interval, metric_interval
from .scio import Item
from .scio.errors import ERROR_KINDS, clause_true, corrupt, inject_errors, wrong_labels  # noqa: F401 (re-exported)
from .scio.screening import F1_TIE, f1_sweep

NOISE_PROFILES: dict[str, dict[str, float]] = {
    "expert": {"count": 0.36, "target type": 0.34, "position": 0.22, "water": 0.12, "terrain": 0.10},
    "stress": {k: 0.5 for k in ERROR_KINDS},
}
KINDS = ("all",) + tuple(ERROR_KINDS)
METHODS = ("scio", "random", "capfilt")


def noise_rates(noise: str | float | dict) -> dict[str, float]:
    """Per-kind error shares of a named profile, a single share, or a per-kind dict."""
    if isinstance(noise, str):
        if noise not in NOISE_PROFILES:
            raise ValueError(f"unknown noise profile {noise!r}: choose one of {', '.join(NOISE_PROFILES)} (or 'llm' "
                             "with an LLM's drafts)")
        return dict(NOISE_PROFILES[noise])
    return dict(noise) if isinstance(noise, dict) else {k: float(noise) for k in ERROR_KINDS}


# screening metrics -------------------------------------------------------------------------------------
def _prf(tp, fp, fn) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def confusion(items: list[Item], flags: list[list[bool]], wrong: list[list[bool]]) -> np.ndarray:
    """Per view, per kind in KINDS ('all' first, then by dimension): [tp, fp, fn, clauses] counts."""
    dims = {dim: 1 + k for k, dim in enumerate(ERROR_KINDS.values())}
    out = np.zeros((len(items), len(KINDS), 4), dtype=np.int64)
    for n, (it, fs, ws) in enumerate(zip(items, flags, wrong)):
        for c, f, w in zip(it.truth or it.clauses, fs, ws):
            cell = np.array([f and w, f and not w, w and not f, 1])
            out[n, 0] += cell
            if c.dim in dims:
                out[n, dims[c.dim]] += cell
    return out


def screening_metrics(items: list[Item], flags: list[list[bool]], wrong: list[list[bool]],
                      intervals: bool = True, seed: int = 0) -> dict:
    """Precision, recall and F1 of flags against wrong clauses, overall and per error kind (by dimension), with
    95% bootstrap intervals resampling tiles (the clauses of one view are not independent, nor are the views and
    corrupted copies of one tile's caption); the share of true clauses flagged (`false_flags`), the flag rate and
    the error rate."""
    return metrics_from_counts(confusion(items, flags, wrong), intervals, seed, groups=tile_groups(items))


def tile_groups(items: list[Item]) -> np.ndarray:
    """Per view, the index of its tile: the unit the intervals resample."""
    return np.unique([it.tile_id for it in items], return_inverse=True)[1]


def metrics_from_counts(counts: np.ndarray, intervals: bool = True, seed: int = 0, draws: int = 1,
                        groups: np.ndarray | None = None) -> dict:
    """`screening_metrics` from per-view counts (`confusion`, or a sum of them over `draws` draws of flags: the
    support is then per draw); with `groups` (one label per view) the intervals resample whole groups."""
    if groups is not None:  # sum each group's views: resampling the sums is the cluster bootstrap
        summed = np.zeros((int(np.max(groups)) + 1 if len(groups) else 0,) + counts.shape[1:], dtype=counts.dtype)
        np.add.at(summed, np.asarray(groups), counts)
        counts = summed
    out = {}
    for k, kind in enumerate(KINDS):
        tp, fp, fn, _ = counts[:, k].sum(0)
        p, r, f = _prf(tp, fp, fn)
        row = {"precision": p, "recall": r, "f1": f, "support": int(tp + fn) // draws}
        if intervals and tp + fn:
            for m, name in enumerate(("precision", "recall", "f1")):
                row[f"{name}_ci"] = list(metric_interval(
                    len(counts), lambda idx, k=k, m=m: _prf(*counts[idx, k, :3].sum(0))[m], seed=seed))
        out[kind] = row
    tp, fp, fn, n = counts[:, 0].sum(0)
    n_true = n - tp - fn
    out["flag_rate"] = float((tp + fp) / n) if n else 0.0
    out["error_rate"] = float((tp + fn) / n) if n else 0.0
    out["false_flags"] = float(fp / n_true) if n_true else 0.0
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
    """Baseline: each clause flagged with probability `rate` (the strategy's flag rate)."""
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


def clean_damage(items: list[Item], flags: list[list[bool]], seed: int = 0) -> dict:
    """Share of clauses flagged on captions with no planted error (every flag removes a true clause), with its
    95% bootstrap interval resampling tiles."""
    per_clause = np.array([f for fs in flags for f in fs], dtype=float)
    views = np.repeat(tile_groups(items), [len(fs) for fs in flags])
    return {"removed": float(per_clause.mean()) if len(per_clause) else 0.0,
            "removed_ci": list(mean_interval(per_clause, views, seed=seed)), "clauses": int(len(per_clause))}


def audit_table(items: list[Item], fixed: list[Item], audit: list[dict], wrong: list[list[bool]],
                max_items: int = 3) -> list[dict]:
    """Per clause of the first `max_items` views with a planted error: its text, the planted kind, whether it is
    wrong, the strategy's scores with and without it, whether it was kept, and the text after reconstruction."""
    rows = []
    chosen = [n for n, it in enumerate(items) if any(it.kinds)][:max_items]
    for n in chosen:
        for i, c in enumerate(items[n].clauses):
            scores = {k: bool(v[i]) if v.dtype == bool else (round(float(v[i]), 4) if np.isfinite(v[i]) else None)
                      for k, v in audit[n].items()}
            rows.append({"view": n, "tile_id": items[n].tile_id, "clause": i, "dim": c.dim, "text": c.body,
                         "planted": items[n].kinds[i] if items[n].kinds else None, "wrong": bool(wrong[n][i]),
                         **scores, "kept": not items[n].flagged[i],
                         "reconstructed": fixed[n].clauses[i].body if fixed[n].clauses[i].body != c.body else ""})
    return rows


# the harness -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Corpus:
    """The harness's corpus: SCIO's data with the training views corrupted `copies` times, and the views once
    clean (truth only), for the damage a strategy does to error-free captions (screening is deterministic, so
    clean copies would only repeat the same flags at `copies` times the cost)."""

    data: object  # klip_lib.scio.ScioData; data.train holds the corrupted views
    clean: list[Item]
    wrong_heldout: list[list[bool]]
    rates: dict[str, float]  # per kind, the share planted; LLM drafts: the share refuted, drafted and refuted counts
    copies: int


def clean_copy(item: Item) -> Item:
    """An item as captioned, its own truth, nothing planted: what the damage to clean captions is measured on."""
    return dataclasses.replace(item, truth=list(item.clauses), kinds=[None] * len(item.clauses))


def noisy_corpus(shard_dir, captions, model_config, cfg, seed: int, noise, copies: int) -> Corpus:
    """The training split's captions (`captions`, a JSONL file of the tiles in `shard_dir`), each `copies` times,
    corrupted independently by the `noise` profile (a NOISE_PROFILES name, one share, or shares per kind): as when
    an LLM captions a tile several times and its hallucinations differ while the truth stays (the self-consistency
    SCIO relies on), and enough planted errors to measure screening with power."""
    from .hcot.generate import read_captions
    from .scio import load_scio_data

    rates = noise_rates(noise)
    data = load_scio_data(shard_dir, read_captions(captions), model_config, cfg, seed)
    clean = [clean_copy(it) for it in data.train]
    data.train = [it for c in range(copies) for it in inject_errors(data.train, data.facts, rates, seed + 100 * c)]
    return Corpus(data, clean, wrong_labels(data.heldout, data.facts), rates, copies)


DRAFT_KIND = "llm draft"
"""The `kinds` label of a clause whose dimension's text came from the LLM's draft (wrong or not)."""


def merge_drafts(records: list[dict], drafts: list[dict]) -> list[dict]:
    """Per tile with a parsed draft (status ok): its caption record with every dimension the draft wrote replaced by
    the draft's text (the others kept, as L5 fills what a draft leaves out), and `drafted` naming those dimensions."""
    from .hcot.schema import caption_text
    from .vocab import CAPTION_DIMENSIONS

    by_tile = {d["tile_id"]: d for d in drafts if d.get("status") == "ok"}
    out = []
    for r in records:
        d = by_tile.get(r["tile_id"])
        if d is None or r.get("status", "ok") != "ok":
            continue
        drafted = [k for k in CAPTION_DIMENSIONS if (d.get(k) or "").strip(" .")]
        dims = {k: d[k] if k in drafted else r.get(k) for k in CAPTION_DIMENSIONS}
        out.append({**r, **dims, "text": caption_text(dims), "drafted": drafted})
    return out


def draft_corpus(shard_dir, captions, drafts, model_config, cfg, seed: int) -> Corpus:
    """The training split's captions with the dimensions an LLM drafted in its own words (`merge_drafts`; `drafts` a
    captions JSONL of one LLM written before L5, e.g. at L4); training tiles without a parsed draft keep their
    template views. The fact-checker labels the drafted clauses. `clean` holds the drafted tiles' template views; the
    calibrated strategy still calibrates on planted held-out errors. `rates` holds the share of the corpus's clauses
    the fact-check refutes, and the drafted and refuted clause counts."""
    from .hcot.generate import read_captions, same_prompt
    from .model import load_tokenizer
    from .scio import corpus_from_records, load_scio_data

    records = read_captions(captions)
    data = load_scio_data(shard_dir, records, model_config, cfg, seed)
    rows = {it.tile_id: it.row for it in data.train}
    records = [r for r in records if r["tile_id"] in rows]
    written = read_captions(drafts)
    writers = {(d.get("backend"), d.get("model")) for d in written}
    if len(writers) > 1:
        raise InputError(f"{drafts}: holds the drafts of {len(writers)} backends or models; give one LLM's drafts")
    if any(d.get("level") == "L5" for d in written):
        raise InputError(f"{drafts}: holds L5 captions (calibrated, not drafts); write drafts with klip caption --level L4")
    by_tile = {d["tile_id"]: d for d in written}
    stale = [r["tile_id"] for r in records if r["tile_id"] in by_tile and same_prompt(r, by_tile[r["tile_id"]]) is False]
    if stale:
        raise InputError(f"{drafts}: {len(stale)} drafts (first {stale[0]}) were written from other facts or another "
                         f"prompt than the captions of {captions}; draft this run's tiles into a new file")
    merged = merge_drafts(records, written)
    if not merged:
        raise InputError(f"{drafts}: no parsed draft of a training tile of {shard_dir}; write drafts with `klip caption "
                         f"--index INDEX --out {drafts} --backend transformers --level L4 --split train`")
    drafted = {r["tile_id"]: set(r["drafted"]) for r in merged}
    items = corpus_from_records(merged, rows, load_tokenizer(model_config), model_config.max_text_len)
    for it in items:
        it.kinds = [DRAFT_KIND if c.dim in drafted[it.tile_id] else None for c in it.clauses]
    clean = [clean_copy(it) for it in data.train if it.tile_id in drafted]
    data.train = items + [it for it in data.train if it.tile_id not in drafted]
    labels = wrong_labels(data.train, data.facts)
    n = sum(len(ws) for ws in labels)
    refuted = sum(w for ws in labels for w in ws)
    return Corpus(data, clean, wrong_labels(data.heldout, data.facts),
                  {DRAFT_KIND: refuted / n if n else 0.0, "drafted": sum(k == DRAFT_KIND for it in items for k in it.kinds),
                   "refuted": refuted}, 1)


def capfilt_screening(model, corpus: Corpus, seed: int = 0) -> dict:
    """The whole-caption ITM filter (BLIP's CapFilt) on the corrupted views: threshold from the held-out views,
    scored like a strategy (it depends on the model only, so both strategies share it)."""
    from .scio import agreement

    data = corpus.data
    whole = lambda its: agreement(model, data.images, [i.row for i in its], [i.text() for i in its])[1]  # noqa: E731
    threshold = capfilt_threshold(whole(data.heldout), data.heldout, corpus.wrong_heldout)
    flags = capfilt_flags(list(whole(data.train)), threshold, data.train)
    return {**screening_metrics(data.train, flags, wrong_labels(data.train, data.facts), seed=seed),
            "restored": 0.0, "damaged": 0.0}


def score_screening(model, corpus: Corpus, items: list[Item], fixed: list[Item], screening, strategy, cfg,
                    capfilt: dict, seed: int = 0, audit_items: int = 3, clean: bool = False) -> dict:
    """One strategy's screening of `items` (flags set) scored against the planted errors, beside random flagging at
    its flag rate (five draws pooled) and `capfilt` (`capfilt_screening`); reconstruction metrics, an audit table
    and, with `clean`, its damage to the clean captions."""
    data = corpus.data
    wrong = wrong_labels(items, data.facts)
    flags = [it.flagged for it in items]
    scio = {**screening_metrics(items, flags, wrong, seed=seed), **reconstruction_metrics(items, fixed, data.facts)}
    draws = [random_flags(items, scio["flag_rate"], seed + d) for d in range(5)]
    random_ = metrics_from_counts(sum(confusion(items, d, wrong) for d in draws), seed=seed, draws=len(draws),
                                  groups=tile_groups(items))
    shuffled = [dataclasses.replace(it, flagged=f) for it, f in zip(items, draws[0])]
    random_.update(reconstruction_metrics(items, strategy.reconstruct(model, data.images, shuffled, screening, cfg),
                                          data.facts))
    row = {"strategy": strategy.name, "scio": scio, "random": random_, "capfilt": capfilt, "noise": corpus.rates,
           "copies": corpus.copies, "audit": audit_table(items, fixed, screening.audit, wrong, audit_items)}
    if clean:  # the same model screens the captions with no planted error
        row["clean"] = clean_damage(corpus.clean, strategy.screen(model, data, corpus.clean, cfg).flags, seed)
    return row


def screening_study(shard_dir, captions, out_dir, preset: str = "smoke", seed: int = 0, noise="expert",
                    copies: int = 24, strategies: tuple[str, ...] = ("released", "calibrated"),
                    audit_items: int = 3, configs: tuple | None = None, steps: int = 0,
                    drafts=None) -> dict[str, dict]:
    """Both strategies screen the SAME model, pretrained (ITC+ITM+MLM, the preset's steps or `steps` > 0) on the
    noisy corpus (`noise` planted in `copies` copies, or with `noise="llm"` the LLM's `drafts`, `draft_corpus`):
    a paired comparison of screening at round p0, one `score_screening` row per strategy (with the clean-caption
    damage), without the cost of each strategy's own rounds."""
    import torch

    from .model import KlipModel
    from .scio import ScioConfig, get_strategy, write_corpus
    from .train import configs_for, pretrain

    model_config, train_cfg = configs or configs_for(preset, objective="klip", seed=seed)
    if steps:
        train_cfg = dataclasses.replace(train_cfg, steps=steps, warmup_steps=min(train_cfg.warmup_steps, steps))
    if noise == "llm":
        if not drafts:
            raise InputError("noise 'llm' screens an LLM's drafts: give drafts=<captions JSONL written at level L4>")
        corpus = draft_corpus(shard_dir, captions, drafts, model_config, ScioConfig(), seed)
    else:
        corpus = noisy_corpus(shard_dir, captions, model_config, ScioConfig(), seed, noise, copies)
    texts = write_corpus(corpus.data.train, Path(out_dir) / "noisy_captions.jsonl", proofread=False)
    torch.manual_seed(train_cfg.seed)
    model = KlipModel(model_config)
    pretrain(corpus.data.shard_dir, Path(out_dir) / "p0", model_config, train_cfg, captions=texts, resume=False,
             model=model)
    from tqdm.auto import tqdm

    out, capfilt = {}, capfilt_screening(model, corpus, seed)
    for name in tqdm(strategies, desc="screen, reconstruct, baselines"):
        strategy, cfg = get_strategy(name), ScioConfig(strategy=name)
        screening = strategy.screen(model, corpus.data, corpus.data.train, cfg)
        items = [dataclasses.replace(it, flagged=f) for it, f in zip(corpus.data.train, screening.flags)]
        fixed = strategy.reconstruct(model, corpus.data.images, items, screening, cfg)
        out[name] = {**score_screening(model, corpus, items, fixed, screening, strategy, cfg, capfilt, seed,
                                       audit_items, clean=True), **screening.log}
    return out


# tables and plots ------------------------------------------------------------------------------------
def screening_block(study: dict[str, dict]) -> dict:
    """The report's task block of a screening study: each strategy's F1 (precision and recall beside it) and random
    flagging at its flag rate and CapFilt, with 95% intervals; `n_test` is the number of wrong clauses."""
    models, ci = {}, {}
    for name, r in study.items():
        for m, label in (("scio", name), ("random", f"random ({name} rate)")):
            models[label] = {k: r[m]["all"][k] for k in ("f1", "precision", "recall")}
            ci[label] = r[m]["all"].get("f1_ci")
    first = next(iter(study.values()))  # CapFilt and the errors are the same for every strategy
    models["capfilt"] = {k: first["capfilt"]["all"][k] for k in ("f1", "precision", "recall")}
    ci["capfilt"] = first["capfilt"]["all"].get("f1_ci")
    return {"task": "screening", "headline": "f1", "higher_is_better": True, "models": models, "ci": ci,
            "n_test": first["scio"]["all"]["support"]}


def _ci(row: dict, key: str) -> str:
    from .evidence import format_interval

    return format_interval(row[key], row.get(f"{key}_ci"))


def block_problems(block: dict) -> list[str]:
    """What is wrong with a screening block (`screening_block`): an F1 outside [0, 1] or outside its own interval."""
    problems = [f"{m}: F1 {v['f1']} outside [0, 1]" for m, v in block["models"].items() if not 0 <= v["f1"] <= 1]
    return problems + [f"{m}: F1 {block['models'][m]['f1']} outside its interval {ci}" for m, ci in block["ci"].items()
                       if ci and ci[0] == ci[0] and not ci[0] - 1e-9 <= block["models"][m]["f1"] <= ci[1] + 1e-9]


def block_lines(block: dict, errors: str) -> list[str]:
    """Per strategy of a screening block: its F1 beside random flagging's at its rate, with intervals, on `n_test`
    `errors`; and a line saying so when they are too few to be evidence."""
    from .evidence import MIN_TEST_ITEMS, format_interval, small_test_set

    f1 = lambda m: format_interval(block["models"][m]["f1"], block["ci"].get(m))  # noqa: E731
    lines = [f"{m}: F1 {f1(m)} vs random flagging at its rate {f1(f'random ({m} rate)')} on {block['n_test']} {errors}"
             for m in block["models"] if f"random ({m} rate)" in block["models"]]
    if small_test_set(block):  # the evidence convention decides what is too few; the line names the errors
        lines.append(f"plumbing check, n={block['n_test']} < {MIN_TEST_ITEMS} {errors}: not evidence")
    return lines


def study_table(study: dict[str, dict]) -> list[dict]:
    """One row per (strategy, method): precision, recall and F1 with 95% intervals, the errors (planted, or the
    LLM's), flag rate, share of true clauses flagged, and (for the strategy) its damage to clean captions."""
    rows = []
    for name, r in study.items():
        for m in METHODS:
            a = r[m]["all"]
            rows.append({"strategy": name, "method": name if m == "scio" else m, "precision": _ci(a, "precision"),
                         "recall": _ci(a, "recall"), "f1": _ci(a, "f1"), "errors": a["support"],
                         "flag_rate": round(r[m]["flag_rate"], 3), "true_flagged": round(r[m]["false_flags"], 3),
                         "clean_removed": _ci(r["clean"], "removed") if m == "scio" and "clean" in r else ""})
    return rows


def study_kinds(study: dict[str, dict], metric: str = "f1") -> list[dict]:
    """Per planted error kind (the five dimensions planting touches): its errors and each strategy's and baseline's
    `metric` with its 95% interval. An LLM's errors in other dimensions count in `study_table`'s 'all' only."""
    first = next(iter(study.values()))
    rows = []
    for kind in ERROR_KINDS:
        row = {"kind": kind, "errors": first["scio"][kind]["support"]}
        for name, r in study.items():
            row[name] = _ci(r["scio"][kind], metric)
            row[f"random ({name} rate)"] = _ci(r["random"][kind], metric)
        row["capfilt"] = _ci(first["capfilt"][kind], metric)
        rows.append(row)
    return rows


def plot_study(study: dict[str, dict], save_to=None):
    """Screening F1 with its 95% interval, overall and per error kind, for each strategy and its baselines."""
    import matplotlib.pyplot as plt

    kinds = list(KINDS)
    fig, axes = plt.subplots(1, len(study), figsize=(6 * len(study), 3.5), constrained_layout=True, squeeze=False)
    for ax, (name, r) in zip(axes[0], study.items()):
        for k, m in enumerate(METHODS):
            f1 = np.array([r[m][kind]["f1"] for kind in kinds])
            ci = np.array([r[m][kind].get("f1_ci", [np.nan, np.nan]) for kind in kinds], dtype=float)
            ax.errorbar(np.arange(len(kinds)) + (k - 1) * 0.15, f1, yerr=np.abs([f1 - ci[:, 0], ci[:, 1] - f1]),
                        fmt="o", capsize=3, label=name if m == "scio" else m)
        ax.set_xticks(range(len(kinds)), kinds, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}: screening F1 (95% CI)")
        ax.legend()
    if save_to:
        fig.savefig(save_to, dpi=100)
    return fig
