"""Scoring captions: the baselines that see no image, BLEU-4, ROUGE-L and CIDEr (pycocoevalcap) of whole captions,
CIDEr per dimension, the HCoT fact-checker's accuracy per dimension, the task block with its intervals and paired
differences, the notebook check, and the plots.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import numpy as np

from ..hcot.factcheck import check_caption
from ..hcot.schema import caption_text
from ..vocab import CAPTION_DIMENSIONS
from .captioning import NONE_TEXT
from .retrieval import SplitData

BASELINES = {"most common facts": "caption of the most common facts", "random caption": "random training caption"}
"""The captions that see no image ({key in `baseline_captions`: name saved in a task block}): the trivial baseline
and chance (a fluent caption of another scene)."""


def baseline_captions(train: SplitData, n: int, seed: int = 0) -> dict[str, list[dict]]:
    """The `BASELINES` captions of `n` test tiles: `most common facts` (`majority_caption`, one caption for all) and
    `random caption` (chance: for each tile the first caption of a training tile drawn at random, seeded)."""
    picks = np.random.default_rng(seed).integers(len(train.records), size=n)
    return {"most common facts": [majority_caption(train)] * n,
            "random caption": [dict(train.records[int(i)][0]) for i in picks]}


def majority_caption(data: SplitData) -> dict:
    """The trivial baseline: each dimension's most common text over the split's captions (None counts too)."""
    dims = {d: Counter(rec.get(d) for recs in data.records for rec in recs).most_common(1)[0][0]
            for d in CAPTION_DIMENSIONS}
    return {**dims, "text": caption_text(dims)}


def metric_tokens(text: str) -> str:
    """Lower-case words and numbers joined by spaces (the role of COCO's PTB tokenizer, which needs Java)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:[-/][a-z0-9]+)*", text.lower()))


def ngram_scores(candidates: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-4, ROUGE-L and CIDEr(-D) of candidate captions against their references (pycocoevalcap)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res = {i: [metric_tokens(c)] for i, c in enumerate(candidates)}
    gts = {i: [metric_tokens(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {"bleu4": float(bleu[3]), "rouge_l": float(Rouge().compute_score(gts, res)[0]),
            "cider": float(Cider().compute_score(gts, res)[0])}


def dimension_cider(captions: list[dict], data: SplitData) -> float:
    """The mean over the 16 dimensions of each dimension's CIDEr-D (its text against the references' text of that
    dimension, 'none' where a caption leaves it out).

    Whole captions here run to 60-140 words, and CIDEr-D's length penalty (a Gaussian of sigma 6 words) all but
    zeroes a caption whose length misses the reference's by 15 words, whatever it says; a dimension is short.
    """
    from pycocoevalcap.cider.cider import Cider

    scores = []
    for d in CAPTION_DIMENSIONS:
        res = {i: [metric_tokens(c.get(d) or NONE_TEXT)] for i, c in enumerate(captions)}
        gts = {i: [metric_tokens(r.get(d) or NONE_TEXT) for r in recs] for i, recs in enumerate(data.records)}
        scores.append(Cider().compute_score(gts, res)[0])
    return float(np.mean(scores))


def fact_accuracy(captions: list[dict], facts: list[dict]) -> dict[str, float | None]:
    """Per dimension, the share of applicable generated dimensions the fact-checker finds true, and `mean`."""
    marks = [check_caption(c, f) for c, f in zip(captions, facts)]
    acc = {}
    for d in CAPTION_DIMENSIONS:
        checked = [m[d] for m in marks if m[d] is not None]
        acc[d] = float(np.mean(checked)) if checked else None
    known = [v for v in acc.values() if v is not None]
    acc["mean"] = float(np.mean(known)) if known else None
    return acc


def score_captions(captions: list[dict], data: SplitData) -> dict:
    """BLEU-4, ROUGE-L, CIDEr of the whole captions, CIDEr per dimension (`cider_dims`, `dimension_cider`) and the
    fact accuracy (`fact_mean` and `fact/<dimension>`) of captions for `data`."""
    scores = ngram_scores([c["text"] for c in captions], [[r["text"] for r in recs] for recs in data.records])
    facts = fact_accuracy(captions, data.facts)
    return {**scores, "cider_dims": dimension_cider(captions, data), "fact_mean": facts.pop("mean"),
            **{f"fact/{d}": v for d, v in facts.items()}}


def cider_items(captions: list[dict], data: SplitData) -> np.ndarray:
    """CIDEr-D of each whole caption against its tile's references (pycocoevalcap's per-image scores, document
    frequencies from the whole split); their mean is `ngram_scores`' cider."""
    from pycocoevalcap.cider.cider import Cider

    res = {i: [metric_tokens(c["text"])] for i, c in enumerate(captions)}
    gts = {i: [metric_tokens(r["text"]) for r in recs] for i, recs in enumerate(data.records)}
    return np.asarray(Cider().compute_score(gts, res)[1], dtype=np.float64)


def fact_intervals(captions: list[dict], facts: list[dict], seed: int = 0) -> dict[str, list[float]]:
    """95% bootstrap interval of the fact accuracy of each dimension (`fact/<dimension>`) over the captions it
    was checked on."""
    from ..evidence import mean_interval

    marks = [check_caption(c, f) for c, f in zip(captions, facts)]
    out = {}
    for d in CAPTION_DIMENSIONS:
        checked = [float(m[d]) for m in marks if m[d] is not None]
        if checked:
            out[f"fact/{d}"] = list(mean_interval(checked, seed=seed))
    return out


def task_block(captions: dict[str, list[dict]], data: SplitData, baselines: dict[str, str] | None = None,
               scores: dict[str, dict] | None = None, seed: int = 0, items: dict[str, np.ndarray] | None = None,
               **extra) -> dict:
    """The metrics block of captioning (headline: CIDEr of whole captions) from every model's captions and the
    baselines' (`baselines`: {key in `captions`: name to save it under}, default `BASELINES`), with `ci` (95%
    bootstrap interval of each one's CIDEr over the test tiles, the mean of `cider_items`, document frequencies
    held at the whole split's), `vs` ({model: {baseline: paired CIDEr difference over the tiles}}, and against the
    random-init model where one was scored) and `n_test` (captioned tiles). `scores` and `items`: the
    `score_captions` and `cider_items` results when already computed."""
    from ..evidence import mean_interval, paired_difference

    baselines = BASELINES if baselines is None else baselines
    name = lambda n: baselines.get(n, n)  # noqa: E731
    scores = scores or {n: score_captions(caps, data) for n, caps in captions.items()}
    items = items or {n: cider_items(caps, data) for n, caps in captions.items()}
    references = [*baselines, *(["random"] if "random" in captions else [])]
    vs = {m: {name(r): paired_difference(items[m], items[r], seed=seed) for r in references if r != m}
          for m in captions if m not in baselines}
    return {"task": "captioning", "headline": "cider", "higher_is_better": True,
            "models": {n: s for n, s in scores.items() if n not in baselines},
            "baselines": {name(n): s for n, s in scores.items() if n in baselines},
            "ci": {name(n): list(mean_interval(v, seed=seed)) for n, v in items.items()}, "vs": vs,
            "n_test": len(data.tile_ids), "tiles": len(data.tile_ids), **extra}


def checks(block: dict, reference: str = "random", chance: str = BASELINES["random caption"]) -> dict:
    """What notebook 10 asserts of a block: whether the no-pretraining reference (the random-init model's
    captioner, trained on the task alone) writes captions nearer their tiles than a random training caption, by the
    paired interval of their CIDEr difference (a decoder that learnt nothing, or the wrong order, fails it; None
    where `reference` was not scored), and the test-set size flag. The pretrained models' differences from the
    baselines and from random init are printed (`difference_lines`), not held to a side."""
    from ..evidence import small_test_set

    verdict = block["vs"].get(reference, {}).get(chance, {}).get("verdict")
    return {"reference": reference, "chance": chance, "beats_chance": None if verdict is None else verdict == "higher",
            "small_test_set": small_test_set(block)}


def difference_lines(block: dict) -> list[str]:
    """One line per model: its paired CIDEr difference from each baseline and from random init, with the 95%
    interval and the verdict."""
    return [f"{m}: " + "; ".join(f"vs {r} {d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] {d['verdict']}"
                                 for r, d in refs.items()) for m, refs in block["vs"].items()]


def plot_fact_accuracy(metrics: dict[str, dict], path: str | os.PathLike | None = None,
                       intervals: dict[str, dict[str, list[float]]] | None = None):
    """Bars of the fact accuracy per caption dimension, one colour per model (the baseline included); error bars
    from `intervals` ({name: fact_intervals(...)}) where given."""
    from ..viz import grouped_bars

    bars = {name: {k.split("/", 1)[1]: ci for k, ci in cis.items()} for name, cis in (intervals or {}).items()}
    return grouped_bars({name: {d: m.get(f"fact/{d}") for d in CAPTION_DIMENSIONS} for name, m in metrics.items()},
                        ylabel="fact accuracy", save_to=path, categories=list(CAPTION_DIMENSIONS), ylim=(0, 1.05),
                        intervals=bars)


def plot_examples(data: SplitData, captions: dict[str, list[dict]], tiles: int = 2,
                  dimensions: tuple[str, ...] = ("Functionality", "Layout", "Water", "Count"),
                  path: str | os.PathLike | None = None):
    """Thumbnails with some dimensions of each model's caption beside the ground truth."""
    import matplotlib.pyplot as plt

    from ..viz import sar_rgb

    tiles = min(tiles, len(data.images))
    columns = {"ground truth": [data.records[i][0] for i in range(tiles)],
               **{name: caps[:tiles] for name, caps in captions.items()}}
    fig, axes = plt.subplots(tiles, len(columns) + 1, figsize=(3.2 * (len(columns) + 1), 3.0 * tiles),
                             squeeze=False)
    for i in range(tiles):
        axes[i, 0].imshow(sar_rgb(data.images[i].numpy()))
        axes[i, 0].set_title(data.tile_ids[i], fontsize=8)
        axes[i, 0].axis("off")
        for ax, (name, caps) in zip(axes[i, 1:], columns.items()):
            lines = [f"{d}: {caps[i].get(d) or '-'}" for d in dimensions]
            ax.text(0, 1, "\n".join(_wrapped(lines, 42)), fontsize=6.5, va="top", family="monospace")
            ax.set_title(name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig


def _wrapped(lines: list[str], width: int) -> list[str]:
    import textwrap

    return [part for line in lines for part in textwrap.wrap(line, width)]
