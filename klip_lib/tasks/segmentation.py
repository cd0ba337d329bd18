"""Semantic segmentation: a light convolutional decoder on the frozen encoder's patch-token map, scored with
mIoU and per-class IoU (torchmetrics' multiclass Jaccard index).

Simulated data: the run's tiles and land-cover masks (vocab.LANDCOVER_CLASSES), split by the tiles'
geographic split. Real data: the Sen1Floods11 chip cut at its own pixel spacing into windows of the model's
size; its upper half trains and its lower half tests (a spatial split, never random pixels).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_jaccard_index

from ..vocab import LANDCOVER_CLASSES, LANDCOVER_NODATA
from .backbone import token_map, token_maps
from .protocol import EpochConfig, augment, choose_augmentation, fit, save_curves, validation_split

IGNORE = 255  # mask value left out of training and scoring (nodata)
WATER_CLASSES = ("land", "water")  # Sen1Floods11 label values 0 and 1


@dataclass
class SegmentationSet:
    """Images with per-pixel class masks, each image in the train or test split."""

    images: torch.Tensor  # [N, C, S, S] normalised dB
    masks: torch.Tensor  # [N, S, S] int64 class index, IGNORE for nodata
    split: list[str]  # "train" / "test" per image
    classes: tuple[str, ...]  # class names, index order
    names: list[str]  # where each image comes from

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, masks) of one split."""
        keep = torch.tensor([s == name for s in self.split])
        return self.images[keep], self.masks[keep]


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """A class mask [H, W] resized to [size, size] by nearest neighbour (no invented classes)."""
    m = torch.from_numpy(mask.astype(np.int64))
    if m.shape == (size, size):
        return m
    return F.interpolate(m[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()


def sim_segmentation_set(index_path: str | os.PathLike, image_size: int, channels: int = 2) -> SegmentationSet:
    """Every tile with a land-cover mask, both resized to `image_size`; a mask whose size differs from its
    tile raises naming both files. Split "train" from train-city tiles, "test" from the held-out cities."""
    import pyarrow.parquet as pq

    from ..data.dataset import to_model_image
    from ..data.geotiff import read_tile

    index_path = Path(index_path)
    rows = pq.read_table(index_path, columns=["tile_id", "path", "split", "landcover_path"]).to_pylist()
    images, masks, split, names = [], [], [], []
    for row in (r for r in rows if r["landcover_path"]):
        tile_path, mask_path = index_path.parent / row["path"], index_path.parent / row["landcover_path"]
        bands, meta = read_tile(tile_path)
        mask, _ = read_tile(mask_path)
        if mask.shape[1:] != bands.shape[1:]:
            raise ValueError(f"{mask_path}: land-cover mask is {mask.shape[2]}x{mask.shape[1]} px but its tile "
                             f"{tile_path.name} is {bands.shape[2]}x{bands.shape[1]} px; re-simulate or re-import the tile")
        mask = np.nan_to_num(mask[0], nan=LANDCOVER_NODATA)
        mask = np.where(mask == LANDCOVER_NODATA, IGNORE, mask)
        images.append(to_model_image(bands, meta.polarizations, channels, image_size))
        masks.append(resize_mask(mask, image_size))
        split.append("train" if row["split"] == "train" else "test")
        names.append(row["tile_id"])
    if not images:
        raise ValueError(f"{index_path}: no tiles with a land-cover mask")
    return SegmentationSet(torch.stack(images), torch.stack(masks), split, LANDCOVER_CLASSES, names)


def sen1floods11_set(bands: np.ndarray, pols: list[str], label: np.ndarray, size: int, channels: int = 2,
                     name: str = "sen1floods11") -> SegmentationSet:
    """Windows of `size` px of a Sen1Floods11 chip (`real_data.load_sen1floods11`) at its own spacing; windows
    in the upper half train, the lower half tests. Label -1 (nodata) is ignored."""
    from ..data.dataset import to_model_image

    if label.shape != bands.shape[1:]:
        raise ValueError(f"{name}: label is {label.shape[1]}x{label.shape[0]} px but the image is "
                         f"{bands.shape[2]}x{bands.shape[1]} px")
    h, w = label.shape
    images, masks, split, names = [], [], [], []
    for r in range(0, h - size + 1, size):
        for c in range(0, w - size + 1, size):
            lab = label[r:r + size, c:c + size]
            images.append(to_model_image(bands[:, r:r + size, c:c + size], pols, channels, size))
            masks.append(torch.from_numpy(np.where(lab < 0, IGNORE, lab).astype(np.int64)))
            split.append("train" if r + size <= h // 2 else "test")
            names.append(f"{name}@{c},{r}")
    if not images:
        raise ValueError(f"{name}: the chip ({w}x{h} px) is smaller than one {size} px window")
    return SegmentationSet(torch.stack(images), torch.stack(masks), split, WATER_CLASSES, names)


def segmentation_metrics(preds: torch.Tensor, target: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """per_class_iou (None for a class neither predicted nor in the ground truth) and miou, their mean over the
    classes that have a value; IGNORE pixels are left out."""
    iou = multiclass_jaccard_index(preds, target, len(classes), average="none", ignore_index=IGNORE,
                                   zero_division=float("nan"))
    per_class = {c: (None if torch.isnan(v) else float(v)) for c, v in zip(classes, iou)}
    return {"miou": float(iou.nanmean()), "per_class_iou": per_class}


def tile_confusions(preds: torch.Tensor, target: torch.Tensor, n_classes: int) -> np.ndarray:
    """Confusion matrix per test image [N, C, C] (rows: true class, columns: predicted), IGNORE pixels left out."""
    out = np.zeros((len(target), n_classes, n_classes), dtype=np.int64)
    for i, (p, t) in enumerate(zip(preds, target)):
        keep = t != IGNORE
        out[i] = np.bincount((t[keep] * n_classes + p[keep]).numpy(), minlength=n_classes ** 2).reshape(n_classes, -1)
    return out


def miou_of(confusions: np.ndarray, idx: np.ndarray | None = None) -> float:
    """mIoU of the images at `idx` (repeats count as copies; default: all) from their confusion matrices, as
    `segmentation_metrics` computes it: IoU per class over the summed matrix, mean over classes with a union."""
    cm = (confusions if idx is None else confusions[idx]).sum(0).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    return float(np.mean(np.diag(cm)[union > 0] / union[union > 0])) if (union > 0).any() else float("nan")


def miou_intervals(predictions: dict[str, torch.Tensor], target: torch.Tensor, n_classes: int,
                   seed: int = 0) -> dict[str, list[float]]:
    """Per model, the 95% bootstrap interval of mIoU over test images (resampled images' confusions summed)."""
    from ..evidence import metric_interval

    out = {}
    for name, preds in predictions.items():
        confusions = tile_confusions(preds, target, n_classes)
        out[name] = list(metric_interval(len(target), lambda idx, cm=confusions: miou_of(cm, idx), seed=seed))
    return out


class SegmentationHead(nn.Module):
    """Light decoder: 3x3 conv, batch norm, ReLU, 1x1 conv to classes on the patch-token map, then bilinear
    upsampling to the image size."""

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.ReLU(),
                                 nn.Conv2d(hidden, n_classes, 1))

    def forward(self, maps: torch.Tensor, size: int) -> torch.Tensor:
        return F.interpolate(self.net(maps), size=(size, size), mode="bilinear", align_corners=False)


@dataclass
class SegmenterConfig:
    hidden: int = 64  # width of the decoder's 3x3 convolution
    max_epochs: int = 30  # passes over the training images at most
    patience: int = 5  # epochs without a better validation mIoU before stopping (best epoch restored)
    val_fraction: float = 0.2  # share of the training images (whole tiles / window rows) held out
    batch_size: int = 16  # images per step
    lr: float = 3e-3  # AdamW learning rate of a decoder on a frozen encoder
    finetune_lr: float = 3e-4  # AdamW learning rate of the supervised reference (encoder and decoder)
    linear_lr: float = 3e-2  # AdamW learning rate of the per-pixel linear baseline (2 inputs: 3e-3 had not converged
    # after 10 epochs on Sen1Floods11, its validation mIoU still rising by 0.01 an epoch)
    augment: str = "none"  # protocol.AUGMENTATIONS; `segmentation_baselines` decides it on validation


def image_groups(data: SegmentationSet) -> list[str]:
    """The unit a validation split keeps whole: a simulated tile, or a row of windows of a real chip
    ('chip@col,row' -> 'chip@row'), so neighbouring windows do not sit on both sides."""
    return [n.rsplit(",", 1)[1] if "@" in n else n for n in data.names]


def _fit_segmenter(net: nn.Module, params, inputs: torch.Tensor, masks: torch.Tensor, groups, n_classes: int,
                   cfg: SegmenterConfig, lr: float, seed: int, desc: str) -> dict:
    """Train `net` (inputs -> logits at mask size) by epochs, early-stopped on validation mIoU."""
    tr, va = (torch.from_numpy(i) for i in validation_split(len(inputs), cfg.val_fraction, seed, groups=groups))
    gen = torch.Generator().manual_seed(seed + 1)
    classes = tuple(str(k) for k in range(n_classes))

    def step(idx):
        x, y = augment(inputs[tr[idx]], cfg.augment, gen, masks[tr[idx]])
        return F.cross_entropy(net(x), y, ignore_index=IGNORE)

    def validate():
        miou = segmentation_metrics(_predict(net, inputs[va]), masks[va], classes)["miou"]
        return miou if np.isfinite(miou) else 0.0

    epochs = EpochConfig(cfg.max_epochs, cfg.patience, cfg.val_fraction)
    return fit(net, params, step, len(tr), cfg.batch_size, validate, epochs, lr, 1e-4, seed, desc)


@torch.no_grad()
def _predict(net: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    net.eval()
    return torch.cat([net(inputs[i:i + batch_size]).argmax(1) for i in range(0, len(inputs), batch_size)])


class _OnMaps(nn.Module):
    """A decoder on precomputed token maps, upsampled to `size`."""

    def __init__(self, head: SegmentationHead, size: int):
        super().__init__()
        self.head, self.size = head, size

    def forward(self, maps):
        return self.head(maps, self.size)


class EndToEnd(nn.Module):
    """An image encoder and a decoder trained together (the supervised reference's network)."""

    def __init__(self, visual: nn.Module, n_classes: int, hidden: int):
        super().__init__()
        self.visual, self.head = visual, SegmentationHead(visual.num_features, n_classes, hidden)

    def forward(self, images):
        return self.head(token_map(self.visual, images), images.shape[-1])


def train_head(maps: torch.Tensor, masks: torch.Tensor, n_classes: int, cfg: SegmenterConfig, seed: int,
               groups=None) -> tuple[SegmentationHead, dict]:
    """(decoder, learning curve): a decoder trained on precomputed token maps [N, W, h, w] against masks
    [N, S, S] by epochs, early-stopped on the mIoU of a validation split (whole `groups`)."""
    torch.manual_seed(seed)
    head = SegmentationHead(maps.shape[1], n_classes, cfg.hidden)
    net = _OnMaps(head, masks.shape[-1])
    curve = _fit_segmenter(net, head.parameters(), maps, masks, groups, n_classes, cfg, cfg.lr, seed, "decoder")
    return head.eval(), curve


def evaluate_segmentation(models: dict, data: SegmentationSet, cfg: SegmenterConfig | None = None,
                          seed: int = 0) -> tuple[dict, dict]:
    """Every model's decoder trained on the train images (frozen encoder) and scored on the test images:
    ({model: {"miou", "per_class_iou", "best_epoch"}}, {model: predicted test masks [N, S, S]}); the learning
    curves are under each score's `curve`."""
    cfg = cfg or SegmenterConfig()
    (train_x, train_y), (test_x, test_y) = data.part("train"), data.part("test")
    if not len(train_x) or not len(test_x):
        raise ValueError(f"segmentation needs train and test images; got {len(train_x)} and {len(test_x)}")
    groups = [g for g, s in zip(image_groups(data), data.split) if s == "train"]
    scores, predictions = {}, {}
    for name, model in models.items():
        head, curve = train_head(token_maps(model.visual, train_x), train_y, len(data.classes), cfg, seed, groups)
        with torch.no_grad():
            preds = head(token_maps(model.visual, test_x), test_y.shape[-1]).argmax(1)
        scores[name] = {**segmentation_metrics(preds, test_y, data.classes), "best_epoch": curve["best_epoch"],
                        "curve": curve}
        predictions[name] = preds
    return scores, predictions


def segmentation_baselines(data: SegmentationSet, scratch: nn.Module, cfg: SegmenterConfig | None = None,
                           seed: int = 0, augmentations: tuple[str, ...] = ("none", "flips"),
                           reference: SegmenterConfig | None = None) -> tuple[dict, dict, dict]:
    """(scores, test predictions, augmentation record) of the baselines: `majority class` (the most frequent
    training class everywhere: the chance level), `pixel linear (raw dB)` (a per-pixel linear classifier on the
    raw normalised dB bands, a 1x1 convolution) and `supervised (scratch)`: the random-init encoder `scratch`
    (the preset's architecture) and a decoder trained end to end at `cfg.finetune_lr`, for `reference`'s epochs
    (default `cfg`'s); the pixel-linear classifier trains at `cfg.linear_lr` for `cfg`'s epochs. The supervised
    reference's augmentation is chosen on validation among `augmentations` (the first wins ties); the models'
    decoders should use the choice. Each score carries its learning curve under `curve`."""
    cfg = cfg or SegmenterConfig()
    reference = reference or cfg
    (train_x, train_y), (test_x, test_y) = data.part("train"), data.part("test")
    groups = [g for g, s in zip(image_groups(data), data.split) if s == "train"]
    n = len(data.classes)
    counts = torch.bincount(train_y[train_y != IGNORE], minlength=n)
    preds = {"majority class": torch.full_like(test_y, int(counts.argmax()))}
    curves = {}
    torch.manual_seed(seed)
    linear = nn.Conv2d(train_x.shape[1], n, 1)
    curves["pixel linear (raw dB)"] = _fit_segmenter(linear, linear.parameters(), train_x, train_y, groups, n, cfg,
                                                     cfg.linear_lr, seed, "pixel linear")
    preds["pixel linear (raw dB)"] = _predict(linear, test_x)
    runs = {}

    def run(kind: str) -> dict:
        torch.manual_seed(seed)
        net = EndToEnd(copy.deepcopy(scratch).requires_grad_(True), n, cfg.hidden)
        c = SegmenterConfig(**{**reference.__dict__, "augment": kind})
        curve = _fit_segmenter(net, net.parameters(), train_x, train_y, groups, n, c, reference.finetune_lr, seed,
                               f"supervised ({kind})")
        runs[kind] = _predict(net, test_x)
        return curve

    choice, record = choose_augmentation(run, augmentations)
    preds["supervised (scratch)"] = runs[choice]
    curves["supervised (scratch)"] = record["curves"][choice]
    scores = {b: {**segmentation_metrics(p, test_y, data.classes), **({"curve": curves[b]} if b in curves else {})}
              for b, p in preds.items()}
    scores["supervised (scratch)"]["augment"] = choice
    return scores, preds, {"choice": choice, **record}


def task_block(scores: dict, data: SegmentationSet, cfg: SegmenterConfig, predictions: dict | None = None,
               seed: int = 0, baselines: dict | None = None, baseline_predictions: dict | None = None,
               augmentation: dict | None = None, **extra) -> dict:
    """The docs/contracts.md metrics block of one segmentation dataset (headline: mIoU); with the predicted
    test masks it carries `ci` (`miou_intervals`) for models and `baselines` alike; `chance` is the majority
    class baseline's mIoU. `n_test`: test images."""
    _, target = data.part("test")
    both = {**(predictions or {}), **(baseline_predictions or {})}
    ci = {"ci": miou_intervals(both, target, len(data.classes), seed)} if both else {}
    clean = lambda d: {m: {k: v for k, v in s.items() if k != "curve"} for m, s in (d or {}).items()}  # noqa: E731
    base = clean(baselines)
    chance = {"chance": base["majority class"]["miou"]} if "majority class" in base else {}
    aug = {"augmentation": {"choice": augmentation["choice"], "validation": augmentation["validation"]}} \
        if augmentation else {}
    return {"task": "segmentation", "headline": "miou", "higher_is_better": True, "models": clean(scores),
            "baselines": base, **chance, "classes": list(data.classes),
            "images": {p: data.split.count(p) for p in ("train", "test")}, **ci, "n_test": len(target),
            "protocol": {k: v for k, v in cfg.__dict__.items() if k != "augment"}, **aug, **extra}


def save_segmentation_curves(scores: dict, baselines: dict, augmentation: dict, path) -> Path:
    """Every learning curve of one dataset (each model's decoder, the pixel-linear baseline, the supervised
    reference under each augmentation option) as json + png (`protocol.save_curves`)."""
    curves = {f"{m} decoder": s["curve"] for m, s in scores.items() if "curve" in s}
    curves["pixel linear (raw dB)"] = baselines["pixel linear (raw dB)"]["curve"]
    curves.update({f"supervised (scratch, {k})": c for k, c in augmentation["curves"].items()})
    return save_curves(curves, path, "learning curves (validation mIoU)", "validation mIoU")


def plot_masks(data: SegmentationSet, predictions: dict, n: int = 3, path: str | os.PathLike | None = None):
    """Test images (co-pol), ground truth and each model's predicted mask side by side, one row per image;
    saved to `path` when given."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    images, masks = data.part("test")
    cmap = ListedColormap(plt.get_cmap("tab10").colors[:len(data.classes)])
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(min(n, len(images)), cols, figsize=(2.2 * cols, 2.3 * min(n, len(images))), squeeze=False)
    for row in range(min(n, len(images))):
        gt = np.ma.masked_equal(masks[row].numpy(), IGNORE)
        panels = [("image", images[row, 0].numpy(), "gray"), ("ground truth", gt, cmap)]
        panels += [(name, p[row].numpy(), cmap) for name, p in predictions.items()]
        for ax, (title, img, cm) in zip(axes[row], panels):
            kw = {} if cm == "gray" else {"vmin": 0, "vmax": len(data.classes) - 1, "interpolation": "nearest"}
            ax.imshow(img, cmap=cm, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(data.classes))]
    fig.legend(handles, data.classes, loc="lower center", ncol=min(len(data.classes), 9), fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def evaluate_dataset(models: dict, data: SegmentationSet, scratch: nn.Module, cfg: SegmenterConfig,
                     reference: SegmenterConfig, augmentations: tuple[str, ...], seed: int = 0, curves_path=None,
                     **extra) -> tuple[dict, dict, dict]:
    """One dataset end to end: the baselines (the supervised reference, trained under `reference`, choosing the
    augmentation on validation), every model's decoder with the chosen augmentation, the learning curves to
    `curves_path` (json + png), and the task block. Returns (block, scores, test predictions)."""
    import dataclasses

    base, base_preds, aug = segmentation_baselines(data, scratch, cfg, seed, augmentations, reference)
    scores, preds = evaluate_segmentation(models, data, dataclasses.replace(cfg, augment=aug["choice"]), seed)
    if curves_path:
        save_segmentation_curves(scores, base, aug, curves_path)
    block = task_block(scores, data, dataclasses.replace(cfg, augment=aug["choice"]), preds, seed, base, base_preds,
                       aug, **extra)
    return block, scores, preds
