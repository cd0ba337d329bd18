"""Rounds p0/p1/p2: train, calibrate the screener on held-out errors, screen and reconstruct the corpus; and
the KLIP model's pretraining through them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import KlipConfig, KlipModel
from .clauses import Item, corpus_from_records, write_corpus


# the rounds ---------------------------------------------------------------------------------------
@dataclass
class ScioConfig:
    strategy: str = "released"  # "released" (the authors' rules) or "calibrated" (ours): klip_lib.scio.strategies
    steps: tuple[int, int, int] = (24, 8, 8)  # training steps of rounds p0 (all text), p1 (masked), p2 (reconstructed)
    top_k: int = 2  # calibrated: MLM fillers proposed per knowledge slot
    margin: float = 0.5  # calibrated: a candidate replaces a clause when its score is lower by this much (standard units)
    calibration_rate: float = 0.5  # calibrated: share of eligible held-out clauses made wrong to calibrate the screener
    max_false_flags: float | None = 0.1  # calibrated: bound on the share of true held-out clauses flagged (the
    # threshold is their (1 - this) quantile, independent of the corpus's error rate); None: F1-optimal threshold
    calibration_copies: int = 3  # calibrated: differently corrupted copies of the held-out captions


@dataclass
class ScioData:
    """Everything the rounds need: images of all tiles, the corpus to proofread, held-out items with errors."""

    images: torch.Tensor  # [tiles, C, S, S] in shard order; an Item's `row` indexes it
    facts: dict[str, dict]  # tile_id -> facts record
    train: list[Item]  # the training split's views (the corpus SCIO proofreads)
    heldout: list[Item]  # the val split's views with injected errors (truth kept): calibration
    shard_dir: Path  # the shard folder training reads


def load_scio_data(shard_dir, records: list[dict], model_config: KlipConfig, cfg: ScioConfig, seed: int) -> ScioData:
    """Views of the train and val captions, and the val views corrupted for calibration."""
    from ..data.dataset import ShardDataset
    from ..model import load_tokenizer
    from .errors import inject_errors

    ds = ShardDataset(shard_dir)
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])
    facts = {t["tile_id"]: t["facts"] for t in ds.tiles}
    tok = load_tokenizer(model_config)

    def views(split):
        rows = {t["tile_id"]: i for i, t in enumerate(ds.tiles) if t["split"] == split and t["facts"]}
        return corpus_from_records(records, rows, tok, model_config.max_text_len)

    val = views("val")
    heldout = [it for c in range(cfg.calibration_copies)
               for it in inject_errors(val, facts, cfg.calibration_rate, seed + 1 + c)]
    if not heldout:
        raise ValueError(f"{shard_dir}: no captioned val tiles to calibrate SCIO's thresholds on; "
                         "simulate more tiles or caption the val split")
    return ScioData(images, facts, views("train"), heldout, Path(shard_dir))


def run_rounds(data: ScioData, out_dir, model_config: KlipConfig, train_cfg, cfg: ScioConfig,
               model: KlipModel | None = None, on_round=None) -> tuple[KlipModel, list[dict]]:
    """Rounds p0, p1, p2: train, calibrate on held-out errors, screen and reconstruct the training corpus.

    p0 trains on all text, p1 on the text with p0's flagged clauses left out, p2 on p1's reconstruction
    (clauses still flagged and not replaced stay left out). `on_round(name, model, items, fixed, screening, strategy)`
    is called after each round (the harness scores it). Returns the model and one log row per round.
    `cfg.strategy` names the screening and reconstruction rules (klip_lib.scio.strategies).
    """
    from ..train import METRICS_CSV, append_csv, pretrain, read_csv
    from .strategies import get_strategy

    strategy = get_strategy(cfg.strategy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        torch.manual_seed(train_cfg.seed)
        model = KlipModel(model_config)
    (out_dir / METRICS_CSV).unlink(missing_ok=True)
    corpus, texts, log, done = data.train, None, [], 0
    for r, (name, steps) in enumerate(zip(("p0", "p1", "p2"), cfg.steps)):
        if steps:
            texts = write_corpus(corpus, out_dir / f"{name}_captions.jsonl", proofread=True)
            phase_cfg = dataclasses.replace(train_cfg, steps=steps, warmup_steps=min(train_cfg.warmup_steps, steps))
            pretrain(data.shard_dir, out_dir / name, model_config, phase_cfg, captions=texts, resume=False,
                     model=model, progress=False)
            for row in read_csv(out_dir / name / METRICS_CSV):
                append_csv(out_dir / METRICS_CSV, {"round": r, **row, "step": done + row["step"]})
            done += steps
        screening = strategy.screen(model, data, corpus, cfg)
        corpus = [dataclasses.replace(it, flagged=f) for it, f in zip(corpus, screening.flags)]
        fixed = strategy.reconstruct(model, data.images, corpus, screening, cfg)
        row = {"round": name, "strategy": cfg.strategy, "steps": done,
               "flag_rate": float(np.mean(np.concatenate(screening.flags))) if corpus else 0.0,
               "edited": sum(a.body != b.body for x, y in zip(corpus, fixed) for a, b in zip(x.clauses, y.clauses)),
               **screening.log}
        if on_round:
            row.update(on_round(name, model, corpus, fixed, screening, strategy) or {})
        log.append(row)
        if name == "p1":  # from p1 on, training continues on the corrected text
            corpus = [dataclasses.replace(f, flagged=[fl and a.body == b.body for fl, a, b in
                                                     zip(f.flagged, it.clauses, f.clauses)])
                      for it, f in zip(corpus, fixed)]
    (out_dir / "scio_rounds.json").write_text(json.dumps(log, indent=2, default=float) + "\n")
    return model, log


def pretrain_klip(shard_dir, out_dir, model_config: KlipConfig, train_cfg, records: list[dict], seed: int = 0,
                  cfg: ScioConfig | None = None) -> Path:
    """The KLIP model: BLIP-like losses (ITC+ITM+MLM) on SCIO-proofread captions (`records`, as
    klip_lib.hcot.generate.read_captions gives them), in rounds p0/p1/p2 whose steps add up to `train_cfg.steps` (by default
    the released strategy, in equal thirds; `cfg` picks another);
    writes `out_dir/model`, `out_dir/metrics.csv` and `out_dir/scio_rounds.json`."""
    cfg = cfg or ScioConfig(steps=default_steps(train_cfg.steps))
    data = load_scio_data(shard_dir, records, model_config, cfg, seed)
    model, _ = run_rounds(data, out_dir, model_config, train_cfg, cfg)
    model.save_pretrained(Path(out_dir) / "model")
    return Path(out_dir) / "model"


def default_steps(total: int, strategy: str = "released") -> tuple[int, int, int]:
    """A preset's step count split over rounds p0, p1, p2: in equal thirds (released: 3 x 36 epochs) or 60/20/20
    (calibrated)."""
    from .strategies import get_strategy

    return get_strategy(strategy).steps(total)
