"""Target classification: a linear probe on frozen features (several seeds), fine-tuning, and zero-shot
from text prompts, scored with torchmetrics on simulated target chips and on real SAR-ACD.

Simulated chips are cut from the run's tiles around the targets' bboxes (ship length classes and aircraft
types, docs/contracts.md); the split follows the tiles' geographic split: train cities for fitting,
the held-out val and test cities for scoring.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

from ..vocab import AIRCRAFT_TYPES, SHIP_CLASSES
from .backbone import pooled_features

SIM_CLASSES: dict[str, str] = {**{t: "ship" for t in SHIP_CLASSES}, **{t: "aircraft" for t in AIRCRAFT_TYPES}}
SAR_ACD_NAMES = {"A320321": "A320/321"}  # SAR-ACD folder name -> vocabulary type where they differ
PROMPT = "Category: {group}: {name}"  # zero-shot prompt, in the words of the HCoT captions' Category clause


@dataclass
class Chips:
    """Labelled image chips with a fixed train/test split."""

    images: torch.Tensor  # [N, C, S, S] normalised dB
    labels: torch.Tensor  # [N] int64 class index
    split: list[str]  # "train" / "test" per chip
    classes: list[str]  # class names, index order
    names: list[str]  # where each chip comes from (tile and target id, or file)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) of inputs left out

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of one split."""
        keep = torch.tensor([s == name for s in self.split])
        return self.images[keep], self.labels[keep]

    def counts(self) -> dict[str, dict[str, int]]:
        """Chips per split and class."""
        return {part: {c: sum(1 for s, y in zip(self.split, self.labels.tolist()) if s == part and y == k)
                       for k, c in enumerate(self.classes)} for part in ("train", "test")}


def chip_window(bands: np.ndarray, bbox: list[float], context: float, min_side: int) -> np.ndarray:
    """A square window [C, s, s] centred on `bbox` (x0, y0, x1, y1), `context` times its longer side
    (at least `min_side` px); outside the tile is NaN."""
    x0, y0, x1, y1 = bbox
    side = int(max(min_side, np.ceil(context * max(x1 - x0, y1 - y0))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    c0, r0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    out = np.full((bands.shape[0], side, side), np.nan, np.float32)
    h, w = bands.shape[1:]
    rs, cs = slice(max(r0, 0), min(r0 + side, h)), slice(max(c0, 0), min(c0 + side, w))
    out[:, rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0] = bands[:, rs, cs]
    return out


def sim_target_chips(index_path: str | os.PathLike, image_size: int, channels: int = 2, context: float = 3.0,
                     min_side: int = 16) -> Chips:
    """Chips of the simulated ships (label: length class) and aircraft (label: type) of an index, resized to
    `image_size`; split "train" from train-city tiles, "test" from the held-out val and test cities."""
    import pyarrow.parquet as pq

    from ..data.dataset import to_model_image
    from ..data.geotiff import read_tile

    index_path = Path(index_path)
    rows = pq.read_table(index_path, columns=["tile_id", "path", "split", "facts_path"]).to_pylist()
    items = []
    for row in rows:
        facts = json.loads((index_path.parent / row["facts_path"]).read_text()) if row["facts_path"] else None
        targets = [t for t in (facts or {}).get("targets", []) if t["type"] in SIM_CLASSES]
        if not targets:
            continue
        bands, meta = read_tile(index_path.parent / row["path"])
        for t in targets:
            image = to_model_image(chip_window(bands, t["bbox"], context, min_side), meta.polarizations, channels, image_size)
            items.append((image, t["type"], "train" if row["split"] == "train" else "test", f"{row['tile_id']}#{t['id']}"))
    if not items:
        raise ValueError(f"{index_path}: no ship or aircraft targets in the facts records; simulate more tiles")
    classes = [c for c in SIM_CLASSES if any(it[1] == c for it in items)]
    return Chips(torch.stack([it[0] for it in items]), torch.tensor([classes.index(it[1]) for it in items]),
                 [it[2] for it in items], classes, [it[3] for it in items])


def class_prompts(classes: list[str]) -> list[str]:
    """One zero-shot prompt per class name (simulated types or SAR-ACD folder names)."""
    names = [SAR_ACD_NAMES.get(c, c) for c in classes]
    return [PROMPT.format(group="ships" if SIM_CLASSES.get(n) == "ship" else "aircraft", name=n) for n in names]


def classification_metrics(preds: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    """accuracy (overall), balanced_accuracy (mean per-class recall over classes present) and the confusion
    matrix (rows: true class, columns: predicted)."""
    present = torch.bincount(target, minlength=n_classes) > 0
    recall = multiclass_accuracy(preds, target, n_classes, average=None)
    return {"accuracy": float(multiclass_accuracy(preds, target, n_classes, average="micro")),
            "balanced_accuracy": float(recall[present].mean()),
            "confusion": multiclass_confusion_matrix(preds, target, n_classes).tolist()}


@dataclass
class ProbeConfig:
    epochs: int = 100  # passes over the training features
    lr: float = 1e-2  # AdamW learning rate of the linear layer
    weight_decay: float = 1e-3  # AdamW weight decay
    batch_size: int = 64  # features per step


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, n_classes: int,
                 cfg: ProbeConfig, seed: int) -> torch.Tensor:
    """Predicted classes of `test_x` from a linear layer trained on standardised frozen features; the seed sets
    its initialisation and the batch order."""
    gen = torch.Generator().manual_seed(seed)
    mean = train_x.mean(0)
    std = train_x.std(0).clamp(min=1e-6) if len(train_x) > 1 else torch.ones(train_x.shape[1])
    torch.manual_seed(seed)
    head = nn.Linear(train_x.shape[1], n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x = (train_x - mean) / std
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            opt.zero_grad()
            F.cross_entropy(head(x[idx]), train_y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return head((test_x - mean) / std).argmax(1)


@dataclass
class FinetuneConfig:
    steps: int = 15  # optimiser steps (batches drawn without replacement, reshuffled after each pass)
    lr: float = 3e-4  # AdamW learning rate of encoder and head
    weight_decay: float = 0.05  # AdamW weight decay
    batch_size: int = 16  # chips per step


def finetune(visual: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test_images: torch.Tensor,
             n_classes: int, cfg: FinetuneConfig, seed: int) -> torch.Tensor:
    """Predicted classes of `test_images` after training a copy of the encoder plus a linear head
    (random horizontal and vertical flips); the given encoder is left untouched."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(copy.deepcopy(visual).requires_grad_(True), nn.Linear(visual.num_features, n_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    images, labels = train
    batches: list[torch.Tensor] = []
    net.train()
    for _ in tqdm(range(cfg.steps), desc="fine-tune", unit="step", leave=False):
        if not batches:
            batches = list(torch.randperm(len(images), generator=gen).split(cfg.batch_size))
        idx = batches.pop(0)
        flips = [d for d in (-1, -2) if torch.rand(1, generator=gen) < 0.5]
        x = images[idx].flip(flips) if flips else images[idx]
        opt.zero_grad()
        F.cross_entropy(net(x), labels[idx]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return torch.cat([net(test_images[i:i + 64]).argmax(1) for i in range(0, len(test_images), 64)])


@torch.no_grad()
def zero_shot(model, images: torch.Tensor, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Predicted class per image: the prompt whose ITC text feature is closest to the image's."""
    model.eval()
    text = model.encode_text(**model.tokenize(prompts))
    feats = torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return (feats @ text.T).argmax(1)


def evaluate_classification(models: dict, chips: Chips, seeds: tuple[int, ...] = (0, 1, 2),
                            probe: ProbeConfig | None = None, tune: FinetuneConfig | None = None) -> dict:
    """Every model scored on the same split: linear-probe accuracy per seed (mean and sample std), fine-tuned
    and zero-shot accuracy (first seed), the probe's confusion matrix of the first seed, and per test chip
    (`items`) its probe correctness averaged over the seeds and its fine-tuned and zero-shot correctness: the
    mean of each is the matching accuracy (the intervals of `task_block` resample them)."""
    probe, tune = probe or ProbeConfig(), tune or FinetuneConfig()
    (train_x, train_y), (test_x, test_y) = chips.part("train"), chips.part("test")
    if not len(train_x) or not len(test_x):
        raise ValueError(f"classification needs train and test chips; counts per split: {chips.counts()}")
    n, prompts, out = len(chips.classes), class_prompts(chips.classes), {}
    for name, model in models.items():
        f_train, f_test = pooled_features(model.visual, train_x), pooled_features(model.visual, test_x)
        probe_preds = [linear_probe(f_train, train_y, f_test, n, probe, s) for s in seeds]
        runs = [classification_metrics(p, test_y, n) for p in probe_preds]
        acc = [r["accuracy"] for r in runs]
        tuned_preds = finetune(model.visual, (train_x, train_y), test_x, n, tune, seeds[0])
        tuned = classification_metrics(tuned_preds, test_y, n)
        zs_preds = zero_shot(model, test_x, prompts) if getattr(model, "has_text", True) else None
        zs = classification_metrics(zs_preds, test_y, n) if zs_preds is not None else {"accuracy": None}  # image-only
        items = {"linear_probe_accuracy": torch.stack([p == test_y for p in probe_preds]).double().mean(0).numpy(),
                 "finetune_accuracy": (tuned_preds == test_y).double().numpy(),
                 "zero_shot_accuracy": None if zs_preds is None else (zs_preds == test_y).double().numpy()}
        out[name] = {"linear_probe_accuracy": float(np.mean(acc)),
                     "linear_probe_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
                     "linear_probe_accuracy_seeds": acc,
                     "linear_probe_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
                     "finetune_accuracy": tuned["accuracy"], "zero_shot_accuracy": zs["accuracy"],
                     "confusion": runs[0]["confusion"], "items": items}
    return out


def task_block(results: dict, chips: Chips, seeds: tuple[int, ...], seed: int = 0, **extra) -> dict:
    """The docs/contracts.md metrics block of one classification dataset (headline: linear-probe accuracy), with
    `ci` (95% bootstrap interval over test chips of each model's headline; the spread over probe seeds is
    `linear_probe_accuracy_std`) and `n_test` (test chips)."""
    from ..evidence import mean_interval

    models = {m: {k: v for k, v in r.items() if k not in ("confusion", "items")} for m, r in results.items()}
    ci = {m: list(mean_interval(r["items"]["linear_probe_accuracy"], seed=seed)) for m, r in results.items()}
    return {"task": "classification", "headline": "linear_probe_accuracy", "higher_is_better": True,
            "models": models, "ci": ci, "n_test": chips.split.count("test"),
            "classes": chips.classes, "counts": chips.counts(), "seeds": list(seeds),
            "confusion": {m: r["confusion"] for m, r in results.items()},
            "skipped": [f"{f}: {why}" for f, why in chips.skipped], **extra}


def plot_confusions(results: dict, classes: list[str], title: str, path: str | os.PathLike | None = None):
    """One confusion-matrix panel per model (first probe seed; counts, rows true); saved to `path` when given."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.4 * len(results), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items()):
        cm = np.asarray(r["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(classes)), classes if ax is axes[0][0] else [], fontsize=7)
        ax.set_title(f"{name}: probe acc {r['linear_probe_accuracy']:.2f}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
