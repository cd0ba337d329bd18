"""Training protocols shared by the vision tasks: a validation split carved from the training split, training by
epochs with early stopping on the validation metric (best weights restored), learning curves saved as json + png,
and the augmentations SAR people use (flips, 90-degree rotations, speckle-preserving random crops) as options
that are kept only where the validation split supports them (`choose_augmentation`).

Evaluation code: nothing here is imported by pretraining.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

AUGMENTATIONS = ("none", "flips", "flips+rot90", "crop")  # the options a config's `augment` may name


@dataclass
class EpochConfig:
    max_epochs: int = 10  # passes over the training items at most
    patience: int = 3  # epochs without a better validation score before stopping
    val_fraction: float = 0.2  # share of the training items (or groups) held out for validation
    warmup_epochs: float = 0.0  # linear warm-up of the learning rate from 1% over this many epochs (0: none)
    cosine: bool = False  # cosine decay of the learning rate to 0 at `max_epochs` (after the warm-up)


def validation_split(n: int, val_fraction: float, seed: int, labels=None, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) index arrays of `n` training items: whole `groups` (tiles, scenes) on one side, classes
    stratified where `labels` are given (sklearn's StratifiedGroupKFold / GroupShuffleSplit; one fold of
    about 1 / val_fraction)."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(np.unique(groups)) < 2:
        raise ValueError(f"a validation split needs at least two training groups; got {len(np.unique(groups))}")
    idx = np.arange(n)
    if labels is not None:
        labels = np.asarray(labels)
        folds = max(2, round(1 / val_fraction))
        if np.bincount(labels).min(initial=folds) >= folds:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            train, val = next(splitter.split(idx, labels, groups))
            return np.sort(train), np.sort(val)
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train, val = next(splitter.split(idx, groups=groups))
    return np.sort(train), np.sort(val)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator, y: torch.Tensor | None = None):
    """A batch [B, C, S, S] (and its masks [B, S, S] when given) augmented alike: `flips` (random horizontal and
    vertical), `flips+rot90` (plus a random multiple of 90 degrees), `crop` (a random crop of 3/4 of the side
    resized back by nearest neighbour, so speckle statistics stay those of the image), `none`."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}: choose one of {', '.join(AUGMENTATIONS)}")
    both = (x,) if y is None else (x, y[:, None])
    if kind in ("flips", "flips+rot90"):
        dims = [d for d in (-1, -2) if torch.rand(1, generator=gen) < 0.5]
        both = tuple(t.flip(dims) for t in both) if dims else both
    if kind == "flips+rot90":
        k = int(torch.randint(4, (1,), generator=gen))
        both = tuple(t.rot90(k, (-2, -1)) for t in both)
    if kind == "crop":
        s = x.shape[-1]
        c = max(1, (3 * s) // 4)
        r0, c0 = (int(torch.randint(s - c + 1, (1,), generator=gen)) for _ in range(2))
        both = tuple(torch.nn.functional.interpolate(t[..., r0:r0 + c, c0:c0 + c].float(), size=(s, s),
                                                     mode="nearest").to(t.dtype) for t in both)
    return both[0] if y is None else (both[0], both[1][:, 0])


def fit(module: nn.Module, params, train_step: Callable[[torch.Tensor], torch.Tensor], n_train: int,
        batch_size: int, validate: Callable[[], float], cfg: EpochConfig, lr: float, weight_decay: float,
        seed: int, desc: str = "train") -> dict:
    """Train `module` by epochs: each epoch a seeded reshuffle of `n_train` items in batches, `train_step(idx)`
    returning the batch loss, then `validate()` (higher is better). Stops after `cfg.patience` epochs with a
    lower validation score than the best (a tie counts as the new best: the later, longer-trained epoch) and
    restores the best epoch's weights. The learning rate is constant unless `cfg` asks for a warm-up and/or cosine
    decay (per step, `learning_rate_schedule`). Returns the learning curve."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-n_train // batch_size)
    schedule = learning_rate_schedule(opt, cfg, steps_per_epoch)
    curve = {"epoch": [], "train_loss": [], "val": [], "best_epoch": 0, "best_val": -float("inf"), "stopped_early": False}
    best_state, waited = None, 0
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=desc, unit="epoch", leave=False)
    for epoch in bar:
        module.train()
        losses = []
        for idx in torch.randperm(n_train, generator=gen).split(batch_size):
            opt.zero_grad()
            loss = train_step(idx)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
        module.eval()
        score = float(validate())
        curve["epoch"].append(epoch)
        curve["train_loss"].append(float(np.mean(losses)))
        curve["val"].append(score)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{score:.3f}")
        if score >= curve["best_val"]:  # a tie counts: coarse metrics (accuracy of a few items) plateau
            curve["best_epoch"], curve["best_val"], waited = epoch, score, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            waited += 1
            if waited >= cfg.patience:
                curve["stopped_early"] = True
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return curve


def learning_rate_schedule(opt: torch.optim.Optimizer, cfg: EpochConfig, steps_per_epoch: int):
    """A per-step scheduler of `opt`: linear warm-up over `cfg.warmup_epochs` (from 1% of the rate), then cosine
    decay to 0 at `cfg.max_epochs` where `cfg.cosine`, else constant (torch.optim.lr_scheduler)."""
    from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR

    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    rest = max(1, cfg.max_epochs * steps_per_epoch - warm)
    after = CosineAnnealingLR(opt, T_max=rest) if cfg.cosine else ConstantLR(opt, factor=1.0, total_iters=0)
    if warm == 0:
        return after
    return SequentialLR(opt, [LinearLR(opt, start_factor=0.01, total_iters=warm), after], milestones=[warm])


def choose_augmentation(run: Callable[[str], dict], options: tuple[str, ...]) -> tuple[str, dict]:
    """The augmentation whose training reaches the best validation score: `run(kind)` trains with it and returns
    its curve; the first option wins ties (list `none` first to keep augmentation only where validation says it
    helps). Returns (choice, {kind: best validation score}) and leaves the chosen run's curve under `curves`."""
    curves = {kind: run(kind) for kind in options}
    scores = {kind: c["best_val"] for kind, c in curves.items()}
    choice = max(options, key=lambda k: (scores[k], -options.index(k)))
    return choice, {"validation": scores, "curves": curves}


def save_curves(curves: dict[str, dict], path: str | os.PathLike, title: str = "", metric: str = "validation") -> Path:
    """Learning curves {name: fit() curve} as `<path>.json` and `<path>.png` (train loss and validation score per
    epoch, the restored best epoch marked); returns the json path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(curves, indent=1) + "\n")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, c in curves.items():
        line, = a.plot(c["epoch"], c["train_loss"], marker=".", label=name)
        b.plot(c["epoch"], c["val"], marker=".", color=line.get_color(), label=name)
        b.plot([c["best_epoch"]], [c["best_val"]], "o", mfc="none", ms=9, color=line.get_color())
    a.set(xlabel="epoch", ylabel="training loss", title="training loss")
    b.set(xlabel="epoch", ylabel=metric, title=f"{metric} (circle: restored epoch)")
    b.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(fig)
    return json_path


def verdict(block: dict, a: str, b: str) -> str:
    """'a 0.41 [0.37, 0.45] below b 0.86 [0.84, 0.89]': how `a`'s headline compares with `b`'s in a task block
    (models and baselines alike), by their 95% intervals: above / below where they do not overlap, else
    'indistinguishable from'."""
    from ..evidence import compare_intervals

    key, ci = block["headline"], block.get("ci") or {}
    rows = {**block.get("baselines", {}), **block["models"]}
    va, vb, ca, cb = rows[a].get(key), rows[b].get(key), ci.get(a), ci.get(b)
    fmt = lambda v, c: f"{v:.3f}" + (f" [{c[0]:.3f}, {c[1]:.3f}]" if c else "")  # noqa: E731
    word = {"better": "above", "worse": "below"}.get(compare_intervals(ca or None, cb or None), "indistinguishable from")
    return f"{a} {fmt(va, ca)} {word} {b} {fmt(vb, cb)}"


def summary_table(blocks: dict[str, dict]):
    """A DataFrame of strings: a row per model and baseline, a column per block, each headline with its 95%
    interval ('0.583 [0.410, 0.720]'); baseline rows are marked '(baseline)'."""
    import pandas as pd

    from ..evidence import format_interval

    cols = {}
    for name, block in blocks.items():
        key, ci = block["headline"], block.get("ci") or {}
        rows = {m: s.get(key) for m, s in block["models"].items()}
        rows.update({f"{b} (baseline)": s.get(key) for b, s in (block.get("baselines") or {}).items()})
        cols[f"{name} {key}"] = {r: format_interval(v, ci.get(r.removesuffix(" (baseline)"))) for r, v in rows.items()}
    return pd.DataFrame(cols).fillna("")
