"""Image-text retrieval on held-out cities: ITC ranks every pair, ITM re-ranks the top k (as BLIP does).

Recall@K is the share of queries whose first correct item is among the K best; `r_mean` is the mean of the
six recalls (image-to-text and text-to-image at 1, 5 and 10), as the paper reports it. Scores are fractions.
`load_split` gathers one split's images, facts and captions for all the vision-language tasks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..model import KlipModel

KS = (1, 5, 10)
RECALL_KEYS = tuple(f"{d}_r{k}" for d in ("i2t", "t2i") for k in KS) + ("r_mean",)


@dataclass
class SplitData:
    images: torch.Tensor  # [N, C, S, S] normalised model images
    tile_ids: list[str]  # tile id per image
    facts: list[dict]  # facts record per image
    records: list[list[dict]]  # the tile's HCoT caption records (status ok), at least one per tile


def load_split(shard_dir: str | os.PathLike, captions: str | os.PathLike, split: str = "test") -> SplitData:
    """Tiles of one split of the shards that have facts and captions in the `captions` JSONL file
    (klip_lib.artifacts.load_split gives a run's)."""
    from ..data import ShardDataset
    from ..hcot.generate import read_captions

    by_tile: dict[str, list[dict]] = {}
    for rec in read_captions(captions):
        if rec.get("status") == "ok" and rec.get("text"):
            by_tile.setdefault(rec["tile_id"], []).append(rec)
    ds = ShardDataset(shard_dir, split=split)
    keep = [i for i, t in enumerate(ds.tiles) if t["facts"] and t["tile_id"] in by_tile]
    if not keep:
        raise ValueError(f"{shard_dir}: no tiles with facts and captions in split {split!r}; "
                         "simulate more tiles or pick another split")
    return SplitData(images=torch.stack([ds[i]["image"] for i in keep]),
                     tile_ids=[ds.tiles[i]["tile_id"] for i in keep],
                     facts=[ds.tiles[i]["facts"] for i in keep],
                     records=[by_tile[ds.tiles[i]["tile_id"]] for i in keep])


@dataclass
class RetrievalConfig:
    k_test: int = 8  # ITC candidates per query that ITM re-ranks (BLIP's k_test)
    batch_size: int = 64  # images, captions or ITM pairs per forward pass


def retrieval_texts(data: SplitData) -> tuple[list[str], list[int]]:
    """Every caption of the split and the index of its image."""
    texts, text_image = [], []
    for i, recs in enumerate(data.records):
        texts += [r["text"] for r in recs]
        text_image += [i] * len(recs)
    return texts, text_image


def query_ranks(scores: np.ndarray, text_image: list[int]) -> dict[str, np.ndarray]:
    """Per query, the 0-based rank of its first correct item: `i2t` one per image (its best-ranked own caption),
    `t2i` one per caption (its image), from an [images, texts] score matrix (higher = better match)."""
    scores = np.asarray(scores, dtype=np.float64)
    text_image = np.asarray(text_image)
    i2t = [np.flatnonzero(text_image[np.argsort(-row, kind="stable")] == i)[0] for i, row in enumerate(scores)]
    t2i = [np.flatnonzero(np.argsort(-col, kind="stable") == text_image[j])[0] for j, col in enumerate(scores.T)]
    return {"i2t": np.asarray(i2t, dtype=np.int64), "t2i": np.asarray(t2i, dtype=np.int64)}


def recalls_from_ranks(ranks: dict[str, np.ndarray]) -> dict[str, float]:
    """Recall@1/5/10 both ways and r_mean: the share of queries whose rank is below k (mean of per-query hits)."""
    out = {f"{way}_r{k}": float(np.mean(ranks[way] < k)) for way in ("i2t", "t2i") for k in KS}
    out["r_mean"] = float(np.mean([out[key] for key in RECALL_KEYS[:-1]]))
    return out


def recall_at_k(scores: np.ndarray, text_image: list[int]) -> dict[str, float]:
    """Recall@1/5/10 both ways and r_mean from an [images, texts] score matrix (higher = better match)."""
    return recalls_from_ranks(query_ranks(scores, text_image))


def recall_statistic(ranks: dict[str, np.ndarray], text_image: list[int]):
    """metric(idx) -> {recall key: value} over the test images at `idx` (repeats allowed) and their captions:
    the unit of resampling is the tile, so an image query and its own captions' queries stay together."""
    text_image = np.asarray(text_image)
    n = len(ranks["i2t"])
    captions = np.bincount(text_image, minlength=n).astype(np.float64)
    t2i_hits = {k: np.bincount(text_image, weights=(ranks["t2i"] < k).astype(np.float64), minlength=n) for k in KS}

    def metric(idx: np.ndarray) -> dict[str, float]:
        out = {f"i2t_r{k}": float(np.mean(ranks["i2t"][idx] < k)) for k in KS}
        out.update({f"t2i_r{k}": float(t2i_hits[k][idx].sum() / captions[idx].sum()) for k in KS})
        out["r_mean"] = float(np.mean([out[key] for key in RECALL_KEYS[:-1]]))
        return out

    return metric


def recall_intervals(ranks: dict[str, np.ndarray], text_image: list[int], seed: int = 0) -> dict[str, list[float]]:
    """95% bootstrap interval of every recall and of r_mean, resampling test tiles (`evidence.metric_interval`)."""
    from ..evidence import metric_interval

    metric = recall_statistic(ranks, text_image)
    return {key: list(metric_interval(len(ranks["i2t"]), lambda idx, key=key: metric(idx)[key], seed=seed))
            for key in RECALL_KEYS}


def random_ranking_recall(n_images: int, text_image: list[int]) -> dict[str, float]:
    """The expected recalls of a uniformly random ranking (the trivial baseline), computed exactly."""
    n_texts = len(text_image)
    per_image = np.bincount(text_image, minlength=n_images)
    out = {}
    for k in KS:
        # image query: 1 - P(none of its g captions among the first k of n_texts)
        m = min(k, n_texts)
        out[f"i2t_r{k}"] = float(np.mean([1 - math.comb(n_texts - g, m) / math.comb(n_texts, m) for g in per_image]))
    for k in KS:
        out[f"t2i_r{k}"] = min(k, n_images) / n_images
    out["r_mean"] = float(np.mean([out[key] for key in RECALL_KEYS[:-1]]))
    return out


@torch.no_grad()
def itc_scores(model: KlipModel, images: torch.Tensor, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Cosine similarities [images, texts] of the normalised ITC features."""
    image_feat = torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    text_feat = []
    for i in range(0, len(texts), batch_size):
        text_feat.append(model.encode_text(**model.tokenize(texts[i:i + batch_size])))
    return image_feat @ torch.cat(text_feat).T


@torch.no_grad()
def itm_rerank(model: KlipModel, images: torch.Tensor, texts: list[str], sim: torch.Tensor,
               cfg: RetrievalConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(image-to-text, text-to-image) score matrices: ITM probability + ITC similarity on each query's top k
    ITC candidates, -100 elsewhere (ranked last). Each image and text of a KlipModel is encoded once; only the
    fusion layers and the ITM head run per pair."""
    tokens = model.tokenize(texts)
    ids, mask, b = tokens["input_ids"], tokens["attention_mask"], cfg.batch_size
    once = isinstance(model, KlipModel)  # external models with an ITM head (HF BLIP) encode per pair
    if once:
        image_embeds = torch.cat([model.image_tokens(images[i:i + b])[0] for i in range(0, len(images), b)])
        text_embeds = torch.cat([model.text_tokens(ids[i:i + b], mask[i:i + b])[0] for i in range(0, len(ids), b)])
    i2t = torch.full_like(sim, -100.0)
    t2i = torch.full_like(sim, -100.0)
    k_text, k_image = min(cfg.k_test, sim.shape[1]), min(cfg.k_test, sim.shape[0])
    pairs = [(i, int(j), "i2t") for i in range(sim.shape[0]) for j in sim[i].topk(k_text).indices]
    pairs += [(int(i), j, "t2i") for j in range(sim.shape[1]) for i in sim[:, j].topk(k_image).indices]
    for start in range(0, len(pairs), cfg.batch_size):
        chunk = pairs[start:start + cfg.batch_size]
        rows, cols = [p[0] for p in chunk], [p[1] for p in chunk]
        itm = model.itm_score(None, ids[cols], mask[cols], image_embeds=image_embeds[rows], text_embeds=text_embeds[cols]) \
            if once else model.itm_score(images[rows], ids[cols], mask[cols])
        for (i, j, way), p in zip(chunk, itm.tolist()):
            (i2t if way == "i2t" else t2i)[i, j] = p + float(sim[i, j])
    return i2t, t2i


def evaluate_retrieval(model: KlipModel, data: SplitData, cfg: RetrievalConfig | None = None) -> dict:
    """Recalls with ITM re-ranking (the main keys) and with ITC alone (keys prefixed `itc_`), the re-ranked
    per-query ranks (`ranks`, for the intervals: `recall_intervals`) and the score matrices (`scores`: the
    re-ranked text-to-image one, for plotting examples)."""
    cfg = cfg or RetrievalConfig()
    model.eval()
    texts, text_image = retrieval_texts(data)
    sim = itc_scores(model, data.images, texts, cfg.batch_size)
    # models without a matching head (external CLIP-style checkpoints) are ranked by ITC alone
    i2t, t2i = itm_rerank(model, data.images, texts, sim, cfg) if getattr(model, "has_itm", True) else (sim, sim)
    ranks = {"i2t": query_ranks(i2t.numpy(), text_image)["i2t"], "t2i": query_ranks(t2i.numpy(), text_image)["t2i"]}
    itc = {f"itc_{k}": v for k, v in recall_at_k(sim.numpy(), text_image).items()}
    return {"metrics": {**recalls_from_ranks(ranks), **itc}, "ranks": ranks, "scores": t2i.numpy(), "texts": texts,
            "text_image": text_image}


def task_block(results: dict[str, dict], data: SplitData, baseline: dict, seed: int = 0, **extra) -> dict:
    """The metrics block of retrieval (headline r_mean) with `ci` (95% bootstrap interval of each model's r_mean,
    resampling test tiles) and `n_test` (test images; each brings its captions as queries)."""
    from ..evidence import metric_interval

    texts, cis = sum(len(r) for r in data.records), {}
    for name, r in results.items():
        metric = recall_statistic(r["ranks"], r["text_image"])
        cis[name] = list(metric_interval(len(data.tile_ids), lambda idx, m=metric: m(idx)["r_mean"], seed=seed))
    return {"task": "retrieval", "headline": "r_mean", "higher_is_better": True,
            "models": {n: r["metrics"] for n, r in results.items()}, "baseline": {"name": "random ranking", **baseline},
            "ci": cis, "n_test": len(data.tile_ids), "n_queries": {"i2t": len(data.tile_ids), "t2i": texts},
            "images": len(data.tile_ids), "captions": texts, **extra}


def versus_random(ci: dict[str, list[float]], random_r_mean: float) -> dict[str, str]:
    """Each model's r_mean interval against a random ranking's r_mean: 'better', 'overlap' or 'worse'
    (`evidence.compare_intervals`)."""
    from ..evidence import compare_intervals

    return {n: compare_intervals(c, [random_r_mean, random_r_mean]) for n, c in ci.items()}


def subset(data: SplitData, indices) -> SplitData:
    """The tiles of `data` at `indices`, in that order."""
    keep = [int(i) for i in indices]
    return SplitData(images=data.images[keep], tile_ids=[data.tile_ids[i] for i in keep],
                     facts=[data.facts[i] for i in keep], records=[data.records[i] for i in keep])


def fit_check(models: dict[str, KlipModel], train: SplitData, cfg: RetrievalConfig | None = None,
              tiles: int = 200, seed: int = 0) -> dict:
    """Retrieval among the pretraining tiles themselves (at most `tiles` of them, drawn seeded): whether each model
    ranks the pairs it was trained on above a random ranking by its interval. A pretraining whose ITC and ITM work
    fits them; broken losses or captions paired with the wrong images leave it at chance. It says nothing of held-out
    tiles. Returns {"n_test", "baseline" (random ranking r_mean), "models" ({name: r_mean}), "ci", "verdict" ({name:
    `versus_random`)}."""
    draw = np.random.default_rng(seed).permutation(len(train.tile_ids))[:tiles]
    data = subset(train, np.sort(draw))
    results = {n: evaluate_retrieval(m, data, cfg) for n, m in models.items()}
    base = random_ranking_recall(len(data.tile_ids), retrieval_texts(data)[1])["r_mean"]
    block = task_block(results, data, {"r_mean": base}, seed)
    return {"n_test": block["n_test"], "baseline": base, "models": {n: r["metrics"]["r_mean"] for n, r in results.items()},
            "ci": block["ci"], "verdict": versus_random(block["ci"], base)}


def plot_recalls(metrics: dict[str, dict], baseline: dict, path: str | os.PathLike | None = None,
                 intervals: dict[str, dict[str, list[float]]] | None = None):
    """Grouped bars of every recall per model (in %), the random-ranking baseline as the last group; error bars
    from `intervals` ({model: recall_intervals(...)}) where given."""
    from ..viz import grouped_bars

    rows = {**metrics, "random ranking": baseline}
    bars = {name: {k: [100 * c for c in ci] for k, ci in cis.items()} for name, cis in (intervals or {}).items()}
    return grouped_bars({name: {k: 100 * m[k] for k in RECALL_KEYS} for name, m in rows.items()},
                        ylabel="recall (%)", save_to=path, categories=list(RECALL_KEYS), ylim=(0, 105),
                        intervals=bars)


def plot_examples(data: SplitData, results: dict[str, dict], queries: int = 2, top: int = 4,
                  path: str | os.PathLike | None = None):
    """Text-to-image examples: per model and query caption, the `top` best images (green frame: correct)."""
    import matplotlib.pyplot as plt

    from ..viz import sar_rgb

    top = min(top, len(data.images))
    rows = [(name, j) for name, r in results.items() for j in range(min(queries, len(r["texts"])))]
    fig, axes = plt.subplots(len(rows), top + 1, figsize=(2.2 * (top + 1.5), 2.2 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [2.5] + [1] * top})
    for ax_row, (name, j) in zip(axes, rows):
        r = results[name]
        ax_row[0].axis("off")
        ax_row[0].text(0, 0.5, f"{name}\n" + "\n".join(_wrap(r["texts"][j], 40, 6)), fontsize=7, va="center")
        for ax, i in zip(ax_row[1:], np.argsort(-r["scores"][:, j], kind="stable")[:top]):
            ax.imshow(sar_rgb(data.images[i].numpy()))
            ax.set_xticks([])
            ax.set_yticks([])
            color = "green" if i == r["text_image"][j] else "red"
            for spine in ax.spines.values():
                spine.set_color(color)
                spine.set_linewidth(3)
            ax.set_title(data.tile_ids[i], fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """The first `lines` lines of text wrapped at `width` characters."""
    import textwrap

    return textwrap.wrap(text, width)[:lines]
