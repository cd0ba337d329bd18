"""Target detection: torchvision Faster R-CNN on a ViTDet simple feature pyramid over the frozen image
encoder, scored with COCO mAP and mAP@50 (torchmetrics' MeanAveragePrecision, pycocotools backend).

Simulated data: the run's tiles cut at their own pixel spacing into windows of the model's image size,
ships and aircraft as the two classes, split by the tiles' geographic split. Real data: HRSID scenes
resized and cut the same way, boxes from the instance masks, whole scenes held out for the test.
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
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from .backbone import PYRAMID_STRIDES, SimpleFeaturePyramid
from .protocol import EpochConfig, fit, save_curves, validation_split

SIM_DETECTION_CLASSES = ("ship", "aircraft")  # label k + 1 (0 is the background of torchvision's detectors)


@dataclass
class DetectionSet:
    """Image windows with boxes, each window in the train or test split."""

    images: torch.Tensor  # [N, C, S, S] normalised dB
    boxes: list[torch.Tensor]  # per window [K, 4] float x0, y0, x1, y1 in pixels
    labels: list[torch.Tensor]  # per window [K] int64, 1..len(classes)
    split: list[str]  # "train" / "test" per window
    classes: tuple[str, ...]  # class names of labels 1..n
    names: list[str]  # where each window comes from

    def part(self, name: str) -> DetectionSet:
        """The windows of one split."""
        keep = [i for i, s in enumerate(self.split) if s == name]
        return DetectionSet(self.images[keep], [self.boxes[i] for i in keep], [self.labels[i] for i in keep],
                            [name] * len(keep), self.classes, [self.names[i] for i in keep])

    def n_boxes(self) -> dict[str, int]:
        """Boxes per split."""
        return {p: sum(len(b) for b, s in zip(self.boxes, self.split) if s == p) for p in ("train", "test")}


def crop_boxes(boxes: np.ndarray, labels: np.ndarray, window: tuple[int, int, int, int],
               min_visible: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to `window` (col, row, width, height), in window pixels; a box keeps its place when at
    least `min_visible` of its area lies inside."""
    c, r, w, h = window
    if not len(boxes):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    clipped = np.stack([np.clip(boxes[:, 0] - c, 0, w), np.clip(boxes[:, 1] - r, 0, h),
                        np.clip(boxes[:, 2] - c, 0, w), np.clip(boxes[:, 3] - r, 0, h)], 1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    keep = area(clipped) >= min_visible * np.maximum(area(boxes), 1e-6)
    return clipped[keep].astype(np.float32), labels[keep].astype(np.int64)


def _windows(height: int, width: int, size: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping size x size windows covering the image (the last row/column shifted inside)."""
    starts = lambda n: sorted({min(s, max(n - size, 0)) for s in range(0, n, size)})  # noqa: E731
    return [(c, r, size, size) for r in starts(height) for c in starts(width)]


def _cut(db: np.ndarray, pols: list[str], boxes, labels, size: int, channels: int, zoom: int = 1):
    """(image, boxes, labels) of every window of one image: windows of `size // zoom` px at the image's own pixel
    spacing, each upsampled `zoom` times to `size` px (boxes alike)."""
    from ..data.dataset import to_model_image

    side, out = size // zoom, []
    for win in _windows(db.shape[1], db.shape[2], side):
        c, r, w, h = win
        patch = np.full((db.shape[0], side, side), np.nan, np.float32)
        part = db[:, r:r + h, c:c + w]
        patch[:, :part.shape[1], :part.shape[2]] = part
        b, lab = crop_boxes(boxes, labels, win)
        out.append((to_model_image(patch, pols, channels, size), torch.from_numpy(b * zoom), torch.from_numpy(lab), win))
    return out


def sim_detection_set(index_path: str | os.PathLike, size: int, channels: int = 2,
                      classes: tuple[str, ...] = SIM_DETECTION_CLASSES, zoom: int = 1) -> DetectionSet:
    """Windows of `size` px cut from every tile with ground truth, boxes of the targets of `classes`; split
    "train" from train-city tiles, "test" from the held-out val and test cities. `zoom` > 1 cuts windows of
    `size // zoom` px and upsamples them, so that targets of a few pixels span more than a feature-map cell."""
    import pyarrow.parquet as pq

    from ..data.dataset import load_facts
    from ..data.geotiff import read_tile
    from ..data.truth import is_ground_truth

    if zoom < 1 or size % zoom:
        raise ValueError(f"detection zoom must be a whole divisor of the window size {size}, got {zoom}")
    index_path = Path(index_path)
    rows = pq.read_table(index_path, columns=["tile_id", "path", "split", "facts_path"]).to_pylist()
    items = []
    for row in rows:
        facts = load_facts(index_path, row["facts_path"])
        if not is_ground_truth(facts):  # an imported tile's targets are CFAR guesses, not labels
            continue
        targets = [t for t in facts["targets"] if t["class"] in classes]
        boxes = np.asarray([t["bbox"] for t in targets], np.float32).reshape(-1, 4)
        labels = np.asarray([classes.index(t["class"]) + 1 for t in targets], np.int64)
        bands, meta = read_tile(index_path.parent / row["path"])
        split = "train" if row["split"] == "train" else "test"
        items += [(*w[:3], split, f"{row['tile_id']}@{w[3][0]},{w[3][1]}")
                  for w in _cut(bands, meta.polarizations, boxes, labels, size, channels, zoom)]
    return _collect(items, classes, index_path)


def hrsid_detection_set(scenes: list, size: int, scene_size: int = 256, channels: int = 2,
                        test_scenes: int = 1) -> DetectionSet:
    """HRSID scenes (`real_data.load_hrsid`) resized to `scene_size` px and cut into `size` px windows; the
    first `test_scenes` scenes (sorted by name) are the test split, the rest train. One class: ship."""
    from .real_data import HRSID_POLS

    items = []
    for k, scene in enumerate(sorted(scenes, key=lambda s: s.name)):
        scale = scene_size / max(scene.db.shape[1:])
        h, w = (round(n * scale) for n in scene.db.shape[1:])
        db = F.interpolate(torch.from_numpy(np.nan_to_num(scene.db, nan=0.0))[None], size=(h, w), mode="bilinear",
                           antialias=True, align_corners=False)[0].numpy()
        labels = np.ones(len(scene.boxes), np.int64)
        split = "test" if k < test_scenes else "train"
        items += [(*w_[:3], split, f"{scene.name}@{w_[3][0]},{w_[3][1]}")
                  for w_ in _cut(db, HRSID_POLS, scene.boxes * scale, labels, size, channels)]
    return _collect(items, ("ship",), "HRSID scenes")


def _collect(items: list, classes: tuple[str, ...], source) -> DetectionSet:
    if not items:
        raise ValueError(f"{source}: no image windows to detect on")
    images, boxes, labels, split, names = zip(*items)
    return DetectionSet(torch.stack(images), list(boxes), list(labels), list(split), tuple(classes), list(names))


@dataclass
class DetectorConfig:
    channels: int = 64  # width of the feature-pyramid maps
    anchor_sizes: tuple[int, ...] = (4, 8, 16, 32)  # anchor side in pixels, one per pyramid level
    representation: int = 256  # width of the box head's two MLP layers
    max_epochs: int = 4  # passes over the training windows that hold boxes, at most
    patience: int = 2  # epochs without a better validation mAP@50 before stopping (best epoch restored)
    val_fraction: float = 0.2  # share of the training windows' groups (tiles, rows of a scene) held out
    batch_size: int = 8  # windows per step
    lr: float = 2e-3  # AdamW learning rate of pyramid and heads
    finetune_lr: float = 3e-4  # AdamW learning rate of the encoder in the supervised reference
    augment: str = "flips"  # "none" or "flips" (random horizontal and vertical flips of window and boxes)
    rois: int = 64  # proposals sampled per window for the box head (torchvision's default 512 is slow on CPU)
    proposals: int = 200  # proposals kept after the RPN's NMS per window (training; half of it at test)
    score_threshold: float = 0.05  # detections kept for scoring from this score on


def build_detector(visual: nn.Module, n_classes: int, image_size: int, cfg: DetectorConfig,
                   trainable: bool = False) -> FasterRCNN:
    """Faster R-CNN over an encoder's simple feature pyramid, for `n_classes` foreground classes and inputs of
    `image_size` px (no resizing, no extra normalisation: inputs are normalised dB already); the encoder is frozen
    unless `trainable` (then pass a copy: it is trained in place)."""
    backbone = SimpleFeaturePyramid(visual, cfg.channels, trainable)
    anchors = AnchorGenerator(tuple((s,) for s in cfg.anchor_sizes), ((0.5, 1.0, 2.0),) * len(cfg.anchor_sizes))
    names = [str(i) for i in range(len(PYRAMID_STRIDES))]
    channels = visual.patch_embed.proj.in_channels
    return FasterRCNN(
        backbone, rpn_anchor_generator=anchors, min_size=image_size, max_size=image_size,
        image_mean=[0.0] * channels, image_std=[1.0] * channels,
        box_roi_pool=MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(cfg.channels * 49, cfg.representation),
        box_predictor=FastRCNNPredictor(cfg.representation, n_classes + 1),
        rpn_pre_nms_top_n_train=2 * cfg.proposals, rpn_post_nms_top_n_train=cfg.proposals,
        rpn_pre_nms_top_n_test=cfg.proposals, rpn_post_nms_top_n_test=cfg.proposals // 2,
        box_batch_size_per_image=cfg.rois, box_score_thresh=cfg.score_threshold)


def window_groups(data: DetectionSet, scene_rows: bool = False) -> list[str]:
    """The unit a validation split keeps whole: the tile of a window ('tile@col,row' -> 'tile'), or with
    `scene_rows` a row of windows of a scene ('scene@col,row' -> 'scene@row': with few scenes, whole scenes
    cannot be spared for validation)."""
    return [n.rsplit(",", 1)[0].split("@")[0] + "@" + n.rsplit(",", 1)[1] if scene_rows else n.split("@")[0]
            for n in data.names]


def _flip(img: torch.Tensor, box: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    size = img.shape[-1]
    if torch.rand(1, generator=gen) < 0.5:
        img, box = img.flip(-1), torch.stack([size - box[:, 2], box[:, 1], size - box[:, 0], box[:, 3]], 1)
    if torch.rand(1, generator=gen) < 0.5:
        img, box = img.flip(-2), torch.stack([box[:, 0], size - box[:, 3], box[:, 2], size - box[:, 1]], 1)
    return img, box


def train_detector(detector: FasterRCNN, data: DetectionSet, cfg: DetectorConfig, seed: int,
                   groups: list[str] | None = None, encoder_lr: float | None = None) -> tuple[FasterRCNN, dict]:
    """(detector, learning curve): pyramid, RPN and box heads (and a trainable encoder, at `encoder_lr`) trained
    by epochs over the training windows that hold boxes (empty windows still supply the RPN's negatives
    through the background around targets), early-stopped on the mAP@50 of a validation split of whole
    `groups` (default: one per window), best epoch restored."""
    has_boxes = [int(len(b) > 0) for b in data.boxes]  # stratified: validation gets windows with boxes
    tr, va = validation_split(len(data.boxes), cfg.val_fraction, seed, labels=has_boxes, groups=groups)
    val = DetectionSet(data.images[va], [data.boxes[i] for i in va], [data.labels[i] for i in va], ["val"] * len(va),
                       data.classes, [data.names[i] for i in va])
    if not sum(len(b) for b in val.boxes):
        raise ValueError(f"detection: the validation split of {len(va)} windows holds no boxes; "
                         "raise val_fraction or add training data")
    with_boxes = torch.tensor([i for i in tr if len(data.boxes[i])])
    gen = torch.Generator().manual_seed(seed + 1)
    encoder = [p for n, p in detector.named_parameters() if p.requires_grad and n.startswith("backbone.encoder.")]
    heads = [p for n, p in detector.named_parameters() if p.requires_grad and not n.startswith("backbone.encoder.")]
    params = [{"params": heads}] + ([{"params": encoder, "lr": encoder_lr or cfg.finetune_lr}] if encoder else [])

    def step(idx):
        images, targets = [], []
        for i in with_boxes[idx].tolist():
            img, box = data.images[i], data.boxes[i].clone().reshape(-1, 4)
            if cfg.augment == "flips":
                img, box = _flip(img, box, gen)
            images.append(img)
            targets.append({"boxes": box, "labels": data.labels[i]})
        return sum(detector(images, targets).values())

    def validate():
        return detection_metrics(predict(detector, val.images), val.boxes, val.labels)["map_50"]

    epochs = EpochConfig(cfg.max_epochs, cfg.patience, cfg.val_fraction)
    curve = fit(detector, params, step, len(with_boxes), cfg.batch_size, validate, epochs, cfg.lr, 1e-4, seed,
                desc="detector")
    return detector.eval(), curve


@torch.no_grad()
def predict(detector: FasterRCNN, images: torch.Tensor, batch_size: int = 16) -> list[dict]:
    """torchvision detections (boxes, scores, labels) per image."""
    detector.eval()
    return [d for i in range(0, len(images), batch_size) for d in detector(list(images[i:i + batch_size]))]


def detection_metrics(preds: list[dict], boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> dict:
    """COCO mAP (IoU 0.50:0.95) and mAP@50 through torchmetrics (pycocotools backend)."""
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds],
                  [{"boxes": b.reshape(-1, 4), "labels": lab} for b, lab in zip(boxes, labels)])
    out = metric.compute()
    if float(out["map"]) < 0:  # pycocotools' -1: nothing to score
        raise ValueError("detection_metrics: no ground-truth boxes in the targets, mAP is undefined")
    return {"map": float(out["map"]), "map_50": float(out["map_50"])}


@dataclass
class Matches:
    """Every test image's detections matched to its ground truth as COCO's evaluation matches them at one IoU
    threshold (per image and class, detections by descending score, at most 100, each taking the unmatched box
    of highest IoU), so that mAP at that threshold over any multiset of images is a cheap sum (`ap_of`)."""

    image: np.ndarray  # [D] image index of each detection, images in order, scores descending within an image
    label: np.ndarray  # [D] class label (1..n)
    score: np.ndarray  # [D] detection score
    tp: np.ndarray  # [D] 1.0 where the detection matched a ground-truth box, else 0.0
    gt: np.ndarray  # [images, n + 1] ground-truth boxes per image and label (column 0 unused)


def match_detections(preds: list[dict], boxes: list[torch.Tensor], labels: list[torch.Tensor], n_classes: int,
                     iou_threshold: float = 0.5, max_dets: int = 100) -> Matches:
    """COCO's per-image matching (pycocotools `evaluateImg`, area 'all', no crowd boxes) of `preds` to the boxes."""
    from torchvision.ops import box_iou

    image, label, score, tp = [], [], [], []
    gt = np.zeros((len(preds), n_classes + 1), dtype=np.float64)
    threshold = min(iou_threshold, 1 - 1e-10)
    for i, (p, b, lab) in enumerate(zip(preds, boxes, labels)):
        b, lab = b.reshape(-1, 4).double(), lab.reshape(-1)
        for c in range(1, n_classes + 1):
            g = b[lab == c]
            gt[i, c] = len(g)
            keep = p["labels"] == c
            s = p["scores"][keep].double()
            order = torch.from_numpy(np.argsort(-s.numpy(), kind="mergesort")[:max_dets])
            d, s = p["boxes"][keep].double()[order].reshape(-1, 4), s[order]
            ious = box_iou(d, g).numpy() if len(d) and len(g) else np.zeros((len(d), len(g)))
            taken = np.zeros(len(g), dtype=bool)
            for k in range(len(d)):
                best, m = threshold, -1
                for j in range(len(g)):
                    if not taken[j] and ious[k, j] >= best:
                        best, m = ious[k, j], j
                if m >= 0:
                    taken[m] = True
                image.append(i)
                label.append(c)
                score.append(float(s[k]))
                tp.append(float(m >= 0))
    return Matches(np.asarray(image, np.int64), np.asarray(label, np.int64), np.asarray(score, np.float64),
                   np.asarray(tp, np.float64), gt)


def ap_of(matches: Matches, idx: np.ndarray | None = None) -> float:
    """COCO mAP (101-point interpolated precision, mean over classes with ground truth) at the matching's IoU
    threshold over the images at `idx` (repeats count as copies; default: every image once). NaN when the
    images hold no ground-truth box."""
    weight = np.bincount(idx, minlength=len(matches.gt)).astype(np.float64) if idx is not None \
        else np.ones(len(matches.gt))
    n_gt = weight @ matches.gt
    recall_points = np.asarray(torch.linspace(0.0, 1.0, 101).tolist())  # torchmetrics' recall points (float32)
    aps = []
    for c in range(1, matches.gt.shape[1]):
        if n_gt[c] == 0:
            continue
        sel = np.flatnonzero((matches.label == c) & (weight[matches.image] > 0))
        sel = sel[np.argsort(-matches.score[sel], kind="mergesort")]
        w = weight[matches.image[sel]]
        tps, fps = np.cumsum(w * matches.tp[sel]), np.cumsum(w * (1 - matches.tp[sel]))
        recall = tps / n_gt[c]
        precision = np.maximum.accumulate((tps / (tps + fps + np.spacing(1)))[::-1])[::-1]
        at = np.searchsorted(recall, recall_points, side="left")
        q = np.zeros(len(recall_points))
        q[at < len(sel)] = precision[at[at < len(sel)]]
        aps.append(q.mean())
    return float(np.mean(aps)) if aps else float("nan")


def evaluate_detection(models: dict, data: DetectionSet, cfg: DetectorConfig | None = None, seed: int = 0,
                       groups: list[str] | None = None) -> tuple[dict, dict]:
    """Every model's detector (frozen encoder) trained on the train windows and scored on the test windows:
    ({model: {"map", "map_50", "best_epoch", "curve"}}, {model: predictions on the test windows}); `groups`:
    one validation unit per training window (default `window_groups`)."""
    cfg = cfg or DetectorConfig()
    train, test = data.part("train"), data.part("test")
    if not train.n_boxes()["train"] or not test.n_boxes()["test"]:
        raise ValueError(f"detection needs boxes in both splits; boxes per split: {data.n_boxes()}")
    groups = groups or window_groups(train)
    scores, predictions = {}, {}
    for name, model in models.items():
        torch.manual_seed(seed)
        detector = build_detector(model.visual, len(data.classes), data.images.shape[-1], cfg)
        detector, curve = train_detector(detector, train, cfg, seed, groups)
        preds = predict(detector, test.images)
        scores[name] = {**detection_metrics(preds, test.boxes, test.labels), "best_epoch": curve["best_epoch"],
                        "curve": curve}
        predictions[name] = preds
    return scores, predictions


def random_boxes(train: DetectionSet, n_images: int, size: int, per_image: int = 20, seed: int = 0) -> list[dict]:
    """The chance detector: `per_image` boxes per window at uniform random places, sides drawn from the training
    boxes, labels from the training labels' frequencies, uniform random scores."""
    gen = torch.Generator().manual_seed(seed)
    boxes, labels = torch.cat([b.reshape(-1, 4) for b in train.boxes]), torch.cat(train.labels)
    out = []
    for _ in range(n_images):
        pick = torch.randint(len(boxes), (per_image,), generator=gen)
        w, h = (boxes[pick, 2] - boxes[pick, 0]), (boxes[pick, 3] - boxes[pick, 1])
        x0, y0 = torch.rand(per_image, generator=gen) * (size - w), torch.rand(per_image, generator=gen) * (size - h)
        out.append({"boxes": torch.stack([x0, y0, x0 + w, y0 + h], 1), "labels": labels[pick],
                    "scores": torch.rand(per_image, generator=gen)})
    return out


def detection_baselines(data: DetectionSet, scratch: nn.Module, cfg: DetectorConfig | None = None, seed: int = 0,
                        groups: list[str] | None = None) -> tuple[dict, dict]:
    """(scores, test predictions) of the baselines: `random boxes` (`random_boxes`: the chance level) and
    `supervised (scratch)`: the random-init encoder `scratch` (the preset's architecture) trained end to end
    with pyramid and heads (encoder at `cfg.finetune_lr`), the models' protocol otherwise."""
    cfg = cfg or DetectorConfig()
    train, test = data.part("train"), data.part("test")
    preds = {"random boxes": random_boxes(train, len(test.boxes), data.images.shape[-1], seed=seed)}
    torch.manual_seed(seed)
    detector = build_detector(copy.deepcopy(scratch), len(data.classes), data.images.shape[-1], cfg, trainable=True)
    detector, curve = train_detector(detector, train, cfg, seed, groups or window_groups(train))
    preds["supervised (scratch)"] = predict(detector, test.images)
    scores = {b: detection_metrics(p, test.boxes, test.labels) for b, p in preds.items()}
    scores["supervised (scratch)"].update(best_epoch=curve["best_epoch"], curve=curve)
    return scores, preds


def save_detection_curves(scores: dict, baselines: dict, path) -> Path:
    """Every learning curve of one dataset (each model's detector and the supervised reference) as json + png."""
    curves = {f"{m} detector": s["curve"] for m, s in {**scores, **baselines}.items() if "curve" in s}
    return save_curves(curves, path, "learning curves (validation mAP@50)", "validation mAP@50")


def map50_intervals(predictions: dict[str, list[dict]], test: DetectionSet, seed: int = 0) -> dict[str, list[float]]:
    """Per model, the 95% bootstrap interval of mAP@50 over the test windows (each resample rescored by `ap_of`
    on the matches made once: `evidence.N_RESAMPLES_METRIC` resamples in well under a second)."""
    from ..evidence import metric_interval

    out = {}
    for name, preds in predictions.items():
        matches = match_detections(preds, test.boxes, test.labels, len(test.classes))
        out[name] = list(metric_interval(len(test.boxes), lambda idx, m=matches: ap_of(m, idx), seed=seed))
    return out


def task_block(scores: dict, data: DetectionSet, cfg: DetectorConfig, predictions: dict | None = None,
               seed: int = 0, baselines: dict | None = None, baseline_predictions: dict | None = None,
               **extra) -> dict:
    """The docs/contracts.md metrics block of one detection dataset (headline: COCO mAP@50); with the test
    predictions it carries `ci` (`map50_intervals`) for models and `baselines` alike; `chance` is the random
    boxes' mAP@50. `n_test`: test windows."""
    test = data.part("test")
    both = {**(predictions or {}), **(baseline_predictions or {})}
    ci = {"ci": map50_intervals(both, test, seed)} if both else {}
    clean = lambda d: {m: {k: v for k, v in s.items() if k != "curve"} for m, s in (d or {}).items()}  # noqa: E731
    base = clean(baselines)
    chance = {"chance": base["random boxes"]["map_50"]} if "random boxes" in base else {}
    return {"task": "detection", "headline": "map_50", "higher_is_better": True, "models": clean(scores),
            "baselines": base, **chance, "classes": list(data.classes), "boxes": data.n_boxes(), **ci,
            "n_test": len(test.boxes), "windows": {p: data.split.count(p) for p in ("train", "test")},
            "protocol": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()}, **extra}


def plot_detections(data: DetectionSet, predictions: dict, n: int = 4, min_score: float = 0.3,
                    path: str | os.PathLike | None = None):
    """The test windows with the most boxes: ground truth (green) and each model's detections from
    `min_score` (red), one row per model, co-pol channel shown; saved to `path` when given."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    test = data.part("test")
    order = sorted(range(len(test.boxes)), key=lambda i: -len(test.boxes[i]))[:n]
    fig, axes = plt.subplots(len(predictions), len(order), figsize=(2.4 * len(order), 2.5 * len(predictions)),
                             squeeze=False)
    for row, (name, preds) in enumerate(predictions.items()):
        for col, i in enumerate(order):
            ax = axes[row][col]
            ax.imshow(test.images[i, 0].numpy(), cmap="gray")
            for b, colour in [(b, "lime") for b in test.boxes[i].tolist()] + \
                    [(b, "red") for b, s in zip(preds[i]["boxes"].tolist(), preds[i]["scores"].tolist()) if s >= min_score]:
                ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, color=colour, lw=1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: {test.names[i]}" if col == 0 else test.names[i], fontsize=7)
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
