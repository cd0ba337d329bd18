"""Target classification: a linear probe on frozen features (several seeds), fine-tuning, and zero-shot
from text prompts, scored with torchmetrics on simulated target chips and on real SAR-ACD.

Simulated chips are cut from the run's tiles around the targets' bboxes (ship length classes and aircraft
types, docs/contracts.md); the split follows the tiles' geographic split: train cities for fitting,
the held-out val and test cities for scoring.
"""

from __future__ import annotations

import copy
import dataclasses
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
from .protocol import EpochConfig, augment, choose_augmentation, fit, save_curves, validation_split

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

    from ..data.dataset import load_facts, to_model_image
    from ..data.geotiff import read_tile
    from ..data.truth import is_ground_truth

    index_path = Path(index_path)
    rows = pq.read_table(index_path, columns=["tile_id", "path", "split", "facts_path"]).to_pylist()
    items = []
    for row in rows:
        facts = load_facts(index_path, row["facts_path"])
        if not is_ground_truth(facts):  # an imported tile's targets are CFAR guesses, not labels
            continue
        targets = [t for t in facts.get("targets", []) if t["type"] in SIM_CLASSES]
        if not targets:
            continue
        bands, meta = read_tile(index_path.parent / row["path"])
        for t in targets:
            image = to_model_image(chip_window(bands, t["bbox"], context, min_side), meta.polarizations, channels, image_size)
            items.append((image, t["type"], "train" if row["split"] == "train" else "test", f"{row['tile_id']}#{t['id']}"))
    if not items:
        raise ValueError(f"{index_path}: no simulated ship or aircraft targets in the facts records; simulate more tiles")
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
    max_epochs: int = 100  # passes over the training features at most
    patience: int = 10  # epochs without a better validation accuracy before stopping (best epoch restored)
    val_fraction: float = 0.2  # share of the training chips (whole tiles for simulated chips) held out
    lr: float = 1e-2  # AdamW learning rate of the linear layer
    weight_decay: float = 1e-3  # AdamW weight decay
    batch_size: int = 256  # features per step


def chip_groups(chips: Chips) -> list[str]:
    """The unit a validation split keeps whole: the tile of a simulated chip ('tile#target'), else the file."""
    return [n.split("#")[0] for n in chips.names]


def _val_split(labels: torch.Tensor, groups, fraction: float, seed: int):
    train, val = validation_split(len(labels), fraction, seed, labels.numpy(), groups)
    return torch.from_numpy(train), torch.from_numpy(val)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, n_classes: int,
                 cfg: ProbeConfig, seed: int, groups=None) -> tuple[torch.Tensor, dict]:
    """(predicted classes of `test_x`, learning curve) of a linear layer trained on standardised frozen features
    by epochs, early-stopped on the accuracy of a validation split carved from the training items (whole
    `groups`); the seed sets the split, the initialisation and the batch order."""
    tr, va = _val_split(train_y, groups, cfg.val_fraction, seed)
    mean = train_x[tr].mean(0)
    std = train_x[tr].std(0).clamp(min=1e-6) if len(tr) > 1 else torch.ones(train_x.shape[1])
    x, test = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(seed)
    head = nn.Linear(train_x.shape[1], n_classes)

    def step(idx):
        return F.cross_entropy(head(x[tr[idx]]), train_y[tr[idx]])

    def validate():
        with torch.no_grad():
            return float((head(x[va]).argmax(1) == train_y[va]).double().mean())

    epochs = EpochConfig(cfg.max_epochs, cfg.patience, cfg.val_fraction)
    curve = fit(head, head.parameters(), step, len(tr), cfg.batch_size, validate, epochs, cfg.lr,
                cfg.weight_decay, seed, desc="probe")
    with torch.no_grad():
        return head(test).argmax(1), curve


@dataclass
class FinetuneConfig:
    max_epochs: int = 3  # passes over the training chips at most
    patience: int = 2  # epochs without a better validation accuracy before stopping (best epoch restored)
    val_fraction: float = 0.2  # share of the training chips (whole tiles for simulated chips) held out
    lr: float = 3e-4  # AdamW learning rate of encoder and head
    weight_decay: float = 0.05  # AdamW weight decay
    batch_size: int = 32  # chips per step
    augment: str = "none"  # protocol.AUGMENTATIONS; `choose_augmentation` decides it on validation
    warmup_epochs: float = 1.0  # linear learning-rate warm-up (protocol.EpochConfig): a ViT from scratch needs one
    cosine: bool = True  # cosine learning-rate decay to 0 at max_epochs


@torch.no_grad()
def _predict(net: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    net.eval()
    return torch.cat([net(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def finetune(visual: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test_images: torch.Tensor,
             n_classes: int, cfg: FinetuneConfig, seed: int, groups=None) -> tuple[torch.Tensor, dict]:
    """(predicted classes of `test_images`, learning curve) after training a copy of the encoder plus a linear
    head end to end by epochs (augmentation `cfg.augment`), early-stopped on the accuracy of a validation split
    carved from the training chips (whole `groups`), best epoch restored; the given encoder is left untouched."""
    images, labels = train
    tr, va = _val_split(labels, groups, cfg.val_fraction, seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    net = nn.Sequential(copy.deepcopy(visual).requires_grad_(True), nn.Linear(visual.num_features, n_classes))

    def step(idx):
        return F.cross_entropy(net(augment(images[tr[idx]], cfg.augment, gen)), labels[tr[idx]])

    def validate():
        return float((_predict(net, images[va]) == labels[va]).double().mean())

    epochs = EpochConfig(cfg.max_epochs, cfg.patience, cfg.val_fraction, cfg.warmup_epochs, cfg.cosine)
    curve = fit(net, net.parameters(), step, len(tr), cfg.batch_size, validate, epochs, cfg.lr, cfg.weight_decay,
                seed, desc=f"fine-tune ({cfg.augment})")
    return _predict(net, test_images), curve


REFERENCE_CNN = "resnet10t"  # timm's smallest ResNet: the convolutional supervised reference


def reference_cnn(in_chans: int, seed: int, arch: str = REFERENCE_CNN) -> nn.Module:
    """A randomly initialised timm CNN (pooled features, no head; `num_features` wide) for `in_chans` channels:
    the supervised reference with the inductive bias small labelled sets need, trained with the same protocol
    as the ViTs, so that a ViT reference below it says "this encoder at this data size", not "a broken protocol"."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)


def raw_pixels(images: torch.Tensor) -> torch.Tensor:
    """The raw-pixel baseline's features: every normalised dB pixel of every channel, flattened."""
    return images.flatten(1)


@torch.no_grad()
def zero_shot(model, images: torch.Tensor, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Predicted class per image: the prompt whose ITC text feature is closest to the image's."""
    model.eval()
    text = model.encode_text(**model.tokenize(prompts))
    feats = torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    return (feats @ text.T).argmax(1)


def evaluate_classification(models: dict, chips: Chips, seeds: tuple[int, ...] = (0, 1, 2),
                            probe: ProbeConfig | None = None, tune: FinetuneConfig | None = None,
                            skip_finetune: tuple[str, ...] = ("random",)) -> dict:
    """Every model scored on the same split: linear-probe accuracy per seed (mean and sample std), fine-tuned
    and zero-shot accuracy (first seed), the probe's confusion matrix of the first seed, the learning curves
    (`curves`: probe of the first seed, fine-tuning), and per test chip (`items`) its probe correctness averaged
    over the seeds and its fine-tuned and zero-shot correctness: the mean of each is the matching accuracy (the
    intervals resample them). Models in `skip_finetune` are not fine-tuned: fine-tuning the random-init encoder
    is the supervised reference of `classification_baselines`."""
    probe, tune = probe or ProbeConfig(), tune or FinetuneConfig()
    (train_x, train_y), (test_x, test_y) = chips.part("train"), chips.part("test")
    if not len(train_x) or not len(test_x):
        raise ValueError(f"classification needs train and test chips; counts per split: {chips.counts()}")
    groups = [g for g, s in zip(chip_groups(chips), chips.split) if s == "train"]
    n, prompts, out = len(chips.classes), class_prompts(chips.classes), {}
    for name, model in models.items():
        f_train, f_test = pooled_features(model.visual, train_x), pooled_features(model.visual, test_x)
        probes = [linear_probe(f_train, train_y, f_test, n, probe, s, groups) for s in seeds]
        probe_preds = [p for p, _ in probes]
        runs = [classification_metrics(p, test_y, n) for p in probe_preds]
        acc = [r["accuracy"] for r in runs]
        tuned_preds, tune_curve = (None, None) if name in skip_finetune else \
            finetune(model.visual, (train_x, train_y), test_x, n, tune, seeds[0], groups)
        zs_preds = zero_shot(model, test_x, prompts) if getattr(model, "has_text", True) else None
        correct = lambda p: None if p is None else (p == test_y).double().numpy()  # noqa: E731
        items = {"linear_probe_accuracy": torch.stack([p == test_y for p in probe_preds]).double().mean(0).numpy(),
                 "finetune_accuracy": correct(tuned_preds), "zero_shot_accuracy": correct(zs_preds)}
        out[name] = {"linear_probe_accuracy": float(np.mean(acc)),
                     "linear_probe_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
                     "linear_probe_accuracy_seeds": acc,
                     "linear_probe_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in runs])),
                     "finetune_accuracy": None if tuned_preds is None else float(items["finetune_accuracy"].mean()),
                     "zero_shot_accuracy": None if zs_preds is None else float(items["zero_shot_accuracy"].mean()),
                     "confusion": runs[0]["confusion"], "items": items,
                     "curves": {"probe": probes[0][1], "finetune": tune_curve}}
    return out


def classification_baselines(chips: Chips, scratch: nn.Module, seeds: tuple[int, ...] = (0, 1, 2),
                             probe: ProbeConfig | None = None, tune: FinetuneConfig | None = None,
                             augmentations: tuple[str, ...] = ("none", "flips"),
                             cnn: str | None = REFERENCE_CNN) -> tuple[dict, dict]:
    """The baselines of a classification split, each {"accuracy", "items" (per test chip), ...}:
    `chance` (1 / classes, no items), `majority class` (the most frequent training class for every chip),
    `raw-pixel probe` (the linear probe of `linear_probe` on `raw_pixels`, mean over `seeds`),
    `supervised (scratch)`: the random-init encoder `scratch` (the preset's architecture) fine-tuned end to end
    with the models' protocol, and `supervised CNN (scratch)`: the timm CNN `cnn` (`reference_cnn`; None: left
    out) trained with the same protocol and augmentation. The augmentation is chosen on the validation split
    among `augmentations` by the `scratch` reference (`protocol.choose_augmentation`, the first wins ties);
    returns (baselines, {"choice", "validation", "curves"}), and the models' fine-tuning should use the choice."""
    probe, tune = probe or ProbeConfig(), tune or FinetuneConfig()
    (train_x, train_y), (test_x, test_y) = chips.part("train"), chips.part("test")
    groups = [g for g, s in zip(chip_groups(chips), chips.split) if s == "train"]
    n = len(chips.classes)
    majority = torch.full_like(test_y, int(torch.bincount(train_y, minlength=n).argmax()))
    raw = [linear_probe(raw_pixels(train_x), train_y, raw_pixels(test_x), n, probe, s, groups)[0] for s in seeds]
    runs = {}

    def run(kind: str) -> dict:
        runs[kind] = finetune(scratch, (train_x, train_y), test_x, n, dataclasses.replace(tune, augment=kind), seeds[0],
                              groups)
        return runs[kind][1]

    choice, record = choose_augmentation(run, augmentations)
    sup = (runs[choice][0] == test_y).double().numpy()
    raw_items = torch.stack([p == test_y for p in raw]).double().mean(0).numpy()
    raw_acc = [float((p == test_y).double().mean()) for p in raw]
    out = {"chance": {"accuracy": 1 / n},
           "majority class": {"accuracy": float((majority == test_y).double().mean()),
                              "items": (majority == test_y).double().numpy()},
           "raw-pixel probe": {"accuracy": float(np.mean(raw_acc)), "accuracy_seeds": raw_acc,
                               "accuracy_std": float(np.std(raw_acc, ddof=1)) if len(raw_acc) > 1 else 0.0,
                               "items": raw_items},
           "supervised (scratch)": {"accuracy": float(sup.mean()), "items": sup, "augment": choice,
                                    "curve": runs[choice][1]}}
    if cnn:
        preds, curve = finetune(reference_cnn(train_x.shape[1], seeds[0], cnn), (train_x, train_y), test_x, n,
                                dataclasses.replace(tune, augment=choice), seeds[0], groups)
        items = (preds == test_y).double().numpy()
        out["supervised CNN (scratch)"] = {"accuracy": float(items.mean()), "items": items, "augment": choice,
                                           "architecture": cnn, "curve": curve}
    return out, {"choice": choice, **record}


def _block(headline: str, models: dict, baselines: dict, chips: Chips, seed: int, **extra) -> dict:
    """A classification block: `models` {name: {metric: value, "items": ...}}, `baselines` {name: {"accuracy",
    "items"}} stored under the headline's name, `ci` (95% bootstrap over test chips) for both."""
    from ..evidence import mean_interval

    scalar = lambda r: {k: v for k, v in r.items() if k not in ("confusion", "items", "curves", "curve")}  # noqa: E731
    ci = {m: list(mean_interval(r["items"][headline], seed=seed)) for m, r in models.items()
          if r["items"].get(headline) is not None}
    base = {b: {headline: r["accuracy"], **{k: v for k, v in scalar(r).items() if k != "accuracy"}}
            for b, r in baselines.items()}
    ci.update({b: list(mean_interval(r["items"], seed=seed)) for b, r in baselines.items() if "items" in r})
    return {"task": "classification", "headline": headline, "higher_is_better": True,
            "models": {m: scalar(r) for m, r in models.items()}, "baselines": base, "ci": ci,
            "chance": 1 / len(chips.classes), "n_test": chips.split.count("test"), "classes": chips.classes,
            "counts": chips.counts(), **extra}


def task_block(results: dict, chips: Chips, seeds: tuple[int, ...], seed: int = 0, baselines: dict | None = None,
               **extra) -> dict:
    """The docs/contracts.md metrics block of one classification dataset's frozen features (headline:
    linear-probe accuracy), with `ci` (95% bootstrap interval over test chips; the spread over probe seeds is
    `linear_probe_accuracy_std`), `n_test` (test chips) and the frozen-feature baselines (chance, majority
    class, raw-pixel probe) under `baselines`."""
    base = {b: r for b, r in (baselines or {}).items() if b in ("chance", "majority class", "raw-pixel probe")}
    return _block("linear_probe_accuracy", results, base, chips, seed, seeds=list(seeds),
                  confusion={m: r["confusion"] for m, r in results.items()},
                  skipped=[f"{f}: {why}" for f, why in chips.skipped], **extra)


def finetune_block(results: dict, baselines: dict, chips: Chips, augmentation: dict, tune: FinetuneConfig,
                   seed: int = 0, **extra) -> dict:
    """The block of the same split's fine-tuning (headline: finetune_accuracy): the fine-tuned models beside
    every baseline, the supervised reference (random init fine-tuned end to end) among them; `augmentation`
    records which augmentation validation chose and the validation accuracy of each option."""
    tuned = {m: r for m, r in results.items() if r["finetune_accuracy"] is not None}
    models = {m: {"finetune_accuracy": r["finetune_accuracy"], "items": r["items"],
                  "best_epoch": r["curves"]["finetune"]["best_epoch"]} for m, r in tuned.items()}
    return _block("finetune_accuracy", models, baselines, chips, seed,
                  augmentation={"choice": augmentation["choice"], "validation": augmentation["validation"]},
                  protocol={k: v for k, v in tune.__dict__.items() if k != "augment"}, **extra)


def checks(block: dict, reference: str) -> dict:
    """What a notebook asserts of a block: whether `reference` (a baseline or model) beats the block's chance
    level by its interval (the low end above chance: a broken protocol fails it), and the test-set size flag."""
    from ..evidence import small_test_set

    ci = block["ci"].get(reference)
    return {"reference": reference, "ci": ci, "chance": block["chance"],
            "beats_chance": ci is not None and ci[0] > block["chance"], "small_test_set": small_test_set(block)}


def save_classification_curves(results: dict, baselines: dict, augmentation: dict, path) -> Path:
    """Every learning curve of one split (each model's probe and fine-tuning, the supervised reference under
    each augmentation option) as json + png (`protocol.save_curves`)."""
    curves = {f"{m} probe": r["curves"]["probe"] for m, r in results.items()}
    curves.update({f"{m} fine-tune": r["curves"]["finetune"] for m, r in results.items() if r["curves"]["finetune"]})
    curves.update({f"supervised (scratch, {k})": c for k, c in augmentation["curves"].items()})
    if "supervised CNN (scratch)" in baselines:
        curves["supervised CNN (scratch)"] = baselines["supervised CNN (scratch)"]["curve"]
    return save_curves(curves, path, "learning curves (validation accuracy)", "validation accuracy")


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


def evaluate_split(name: str, models: dict, chips: Chips, scratch: nn.Module, seeds: tuple[int, ...],
                   probe: ProbeConfig, tune: FinetuneConfig, augmentations: tuple[str, ...], seed: int = 0,
                   curves_path=None, **extra) -> tuple[dict, dict]:
    """One dataset end to end: the baselines (the supervised reference choosing the augmentation on validation),
    every model with the chosen augmentation, and two blocks: `classification/<name>` (frozen features, linear
    probe) and `classification/<name>_finetune`; the learning curves go to `curves_path` (json + png).
    Returns (blocks, results)."""
    base, aug = classification_baselines(chips, scratch, seeds, probe, tune, augmentations)
    tune = dataclasses.replace(tune, augment=aug["choice"])
    results = evaluate_classification(models, chips, seeds, probe, tune)
    if curves_path:
        save_classification_curves(results, base, aug, curves_path)
    blocks = {f"classification/{name}": task_block(results, chips, seeds, seed, baselines=base, **extra),
              f"classification/{name}_finetune": finetune_block(results, base, chips, aug, tune, seed, **extra)}
    return blocks, results
