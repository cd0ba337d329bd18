"""Pretraining engine: fused AdamW + warmup/cosine, clipping, accumulation, bf16 where the chip has it, exact resume, DDP.

One entry point for one CPU, one GPU or `torchrun` (DDP):

    python -m klip_lib.train --shards DIR --out DIR [--preset smoke] [--objective itc+itm+mlm] [--steps N]
    torchrun --nproc_per_node 2 -m klip_lib.train ...

Batches are a pure function of (seed, step), so a resumed run reads exactly the batches the interrupted
run would have read; checkpoints hold model, optimizer, scheduler, RNG states and the step, written
atomically, and a resumed CPU run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from . import dist
from .errors import UserError, one_line, user_errors
from .files import write_json_atomic
from .model import KlipConfig, KlipModel, scene_ids_tensor
from .weights import CheckpointError, torch_load

# objective name -> the model losses it trains ("klip" adds SCIO's screening rounds on top: klip_lib.scio)
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "itc": ("itc",),  # CLIP-like
    "itc+itm+mlm": ("itc", "itm", "mlm"),  # BLIP-like
    "klip": ("itc", "itm", "mlm"),  # BLIP-like losses on SCIO-proofread captions
}
PRECISIONS = ("auto", "bf16", "fp32")
CHECKPOINT = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
RESULT = "result.json"  # what a finished pretraining measured (read_result)


class TrainError(UserError, RuntimeError):
    """A problem with the training inputs or the checkpoint, with what to do about it."""


@dataclass
class TrainConfig:
    objective: str = "itc+itm+mlm"  # "itc" (CLIP-like), "itc+itm+mlm" (BLIP-like) or "klip" (with SCIO)
    steps: int = 40  # optimizer steps in all
    batch_size: int = 16  # samples per process per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 5e-4  # peak learning rate after warmup
    weight_decay: float = 0.05  # AdamW decay of weight matrices (not of biases, norms, embeddings, temperature)
    warmup_steps: int = 5  # linear warmup from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    clip_norm: float = 1.0  # gradient-norm clipping (0: off)
    alpha: float = 0.4  # momentum-distillation weight of the ITC targets
    checkpoint_every: int = 20  # write a resumable checkpoint every N steps (and at the end)
    num_workers: int = 0  # DataLoader worker processes
    compile: bool = False  # torch.compile the training step (KlipModel.compile_step: one graph, fixed shapes)
    precision: str = "auto"  # "auto": bf16 autocast on CUDA and on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "bf16", "fp32"
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda"
    seed: int = 0  # drives batches, initialisation, masking and negatives

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise TrainError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")


# data ---------------------------------------------------------------------------------------------
class StepBatches(Sampler):
    """Index batches as a pure function of (seed, micro-step): epoch-wise permutations, this rank's slice.

    Yields (index, draw) keys; the draw (the epoch) makes the dataset pick a tile's captions in turn.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.rank, self.world = rank, world

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self):
        per_step = self.batch * self.world
        for micro in range(self.start, self.stop):
            first = micro * per_step + self.rank * self.batch
            positions = range(first, first + self.batch)
            yield [(int(self._order(p // self.n)[p % self.n]), p // self.n) for p in positions]

    def __len__(self) -> int:
        return self.stop - self.start


def collate(samples: list[dict]) -> dict:
    return {"image": torch.stack([s["image"] for s in samples]), "text": [s["text"] for s in samples],
            "scene_id": [s["scene_id"] or s["tile_id"] for s in samples]}


def open_shards(shard_dir: str | os.PathLike, model_config: KlipConfig, captions=None, split: str = "train"):
    """The training split of a shard folder, checked against the model's image size and channels."""
    from .data.dataset import SHARD_MANIFEST, ShardDataset

    shard_dir = Path(shard_dir)
    manifest = shard_dir / SHARD_MANIFEST
    if not manifest.is_file():
        raise TrainError(f"{shard_dir}: no shard manifest; build shards with klip_lib.data.build_shards "
                         "(or let klip_lib.artifacts.ensure_shards do it)")
    meta = json.loads(manifest.read_text())
    if (meta["image_size"], meta["channels"]) != (model_config.image_size, model_config.in_chans):
        raise TrainError(f"{shard_dir}: shards are {meta['channels']} x {meta['image_size']} px but the model wants "
                         f"{model_config.in_chans} x {model_config.image_size} px (shards from another preset?); "
                         "rebuild them for this preset")
    ds = ShardDataset(shard_dir, split=split, captions=captions)
    if len(ds) == 0:
        raise TrainError(f"{shard_dir}: no tiles in split {split!r}; simulate or import more tiles")
    return ds


@torch.no_grad()
def fixed_batch_losses(model: KlipModel, dataset, objectives: tuple[str, ...], n: int = 16, seed: int = 0) -> dict:
    """Losses on the dataset's first `n` tiles in eval mode with an empty queue: comparable before and after
    training (the training ITC grows as the queue fills with more negatives, so it cannot show progress)."""
    device = next(model.parameters()).device
    batch = collate([dataset[(i, 0)] for i in range(min(n, len(dataset)))])
    was_training, filled = model.training, model.queue_filled.clone()
    model.eval()
    model.queue_filled.zero_()
    try:
        tokens = model.tokenize(batch["text"], device)
        out = model(batch["image"].to(device), tokens["input_ids"], tokens["attention_mask"],
                    scene_ids_tensor(batch["scene_id"], device), objectives=objectives,
                    generator=torch.Generator().manual_seed(seed))
    finally:
        model.queue_filled.copy_(filled)
        model.train(was_training)
    return {k: float(v) for k, v in out.items()}


# optimisation -------------------------------------------------------------------------------------
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices only; biases, norms, embeddings, tokens and the temperature are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or "embed" in name or "token" in name or name.endswith("temp")
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine down to min_lr_ratio at the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16 in /proc/cpuinfo's flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 for autocast, or None for fp32: `auto` picks bf16 on CUDA and on a CPU with native bf16 (elsewhere
    bf16 is emulated and slower than fp32)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_bf16() else None
    return torch.bfloat16 if precision == "bf16" else None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("device 'cuda' asked for but CUDA is not available; use --device cpu")
    if name == "cuda" and dist.is_distributed():
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(name)


# checkpoints --------------------------------------------------------------------------------------
def rng_state(generator: torch.Generator) -> dict:
    """Every RNG the loop draws from, as tensors, lists and numbers: what torch.load(weights_only=True) reads."""
    numpy = np.random.get_state(legacy=False)
    version, keys, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
             "numpy": {"keys": numpy["state"]["key"].tolist(), "pos": int(numpy["state"]["pos"]),
                       "has_gauss": int(numpy["has_gauss"]), "gauss": float(numpy["gauss"])},
             "python": [version, list(keys), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"],
                         "state": {"key": np.array(numpy["keys"], dtype=np.uint32), "pos": numpy["pos"]}})
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write through a temporary file and rename: a failed write (full disk) leaves the last checkpoint intact."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TrainError(f"could not write checkpoint {path}: {e.strerror or e}; the previous checkpoint "
                         f"{'is intact' if path.exists() else 'does not exist'}. Free space and resume.") from e


def load_checkpoint(path: Path, model_config: KlipConfig, train_config: TrainConfig,
                    allow_pickle: bool = False) -> dict:
    """Load a checkpoint written by this module (weights_only=True: tensors, lists and numbers; one that needs
    unpickling, as older versions wrote, only with `allow_pickle`); a model config that differs names the fields."""
    try:
        ckpt = torch_load(path, allow_pickle, how="pass --allow-pickle (allow_pickle=True), or --fresh to start over")
    except CheckpointError as e:
        raise TrainError(str(e)) from None
    except Exception as e:
        raise TrainError(f"{path}: not a readable checkpoint ({e}); delete it to start over") from e
    saved = ckpt["model_config"]
    wanted = dataclasses.asdict(model_config)
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {wanted.get(k)!r}" for k in diff)
        raise TrainError(f"{path}: model config does not match the checkpoint ({details}); "
                         "use the preset it was trained with, or another output folder")
    if ckpt["train_config"]["objective"] != train_config.objective:
        raise TrainError(f"{path}: trained with objective {ckpt['train_config']['objective']!r}, "
                         f"not {train_config.objective!r}; use another output folder")
    return ckpt


# the loop -----------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    out_dir: Path  # folder with checkpoint.pt, metrics.csv and model/ (save_pretrained)
    steps: int  # optimizer steps done in all
    first: dict  # training log row of the first step
    last: dict  # training log row of the last step
    before: dict  # fixed-batch losses before training (fixed_batch_losses)
    after: dict  # fixed-batch losses after this call
    seconds: float  # wall time of this call
    precision: str = "fp32"  # what the step ran in: "bf16 autocast" or "fp32" (TrainConfig.precision, chosen at run time)


def pretrain(shard_dir, out_dir, model_config: KlipConfig, cfg: TrainConfig, captions=None, resume: bool = True,
             stop_after: int | None = None, model: KlipModel | None = None, progress: bool = True,
             allow_pickle: bool = False) -> TrainResult:
    """Train on the shards' training split into `out_dir`; continue from its checkpoint when `resume` (one that
    needs unpickling only with `allow_pickle`: see load_checkpoint).

    `stop_after` ends this call after that many steps in all (to simulate an interruption in tests).
    `model` trains a given model (SCIO continues training on proofread captions) instead of a new one.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    rank, world = dist.rank(), dist.world_size()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    dataset = open_shards(shard_dir, model_config, captions)
    model = model if model is not None else KlipModel(model_config)
    model.to(device).train()
    # fused: one kernel for all parameters (CPU and CUDA), elementwise, so as deterministic as the foreach one
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed + 1000 * rank)
    step, first = 0, {}
    ckpt_path = out_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, model_config, cfg, allow_pickle)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, first, before = ckpt["step"], ckpt.get("first", {}), ckpt.get("before", {})
    else:
        ckpt_path.unlink(missing_ok=True)
        before = fixed_batch_losses(model, dataset, OBJECTIVES[cfg.objective], seed=cfg.seed)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.objective == "itc", broadcast_buffers=False)
    if cfg.compile:
        model.compile_step()
    end = min(cfg.steps, stop_after) if stop_after else cfg.steps
    sampler = StepBatches(len(dataset), cfg.batch_size, cfg.seed, step * cfg.grad_accum, end * cfg.grad_accum,
                          rank, world)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    batches = iter(loader)  # creating the iterator draws a seed from the global RNG: restore the RNG after it
    if step:
        set_rng_state(ckpt["rng"][rank] if isinstance(ckpt["rng"], list) else ckpt["rng"], generator)
    objectives = OBJECTIVES[cfg.objective]
    dtype = autocast_dtype(device, cfg.precision)
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    log_path = out_dir / METRICS_CSV
    if step == 0 and rank == 0:
        log_path.unlink(missing_ok=True)
    bar = tqdm(total=end, initial=step, desc=f"pretrain {cfg.objective}", disable=not progress or rank != 0)
    last: dict = {}
    sums: dict[str, float] = {}
    tick, micro = time.perf_counter(), 0
    for batch in batches:
        images = batch["image"].to(device, non_blocking=True)
        tokens = model.tokenize(batch["text"], device)
        scene_ids = scene_ids_tensor(batch["scene_id"], device)
        with autocast:
            out = net(images, tokens["input_ids"], tokens["attention_mask"], scene_ids, objectives=objectives,
                      alpha=cfg.alpha, generator=generator)
        (out["loss"] / cfg.grad_accum).backward()
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        sums["tokens"] = sums.get("tokens", 0.0) + float(tokens["attention_mask"].sum()) * world
        micro += 1
        if micro % cfg.grad_accum:
            continue
        if cfg.clip_norm:
            sums["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += 1
        elapsed = time.perf_counter() - tick
        tick = time.perf_counter()
        row = {"step": step, "lr": lr, **{k: v for k, v in sums.items() if k != "tokens"},
               "images_per_s": cfg.batch_size * world * cfg.grad_accum / elapsed, "tokens_per_s": sums["tokens"] / elapsed}
        sums = {}
        first = first or row
        last = row
        if rank == 0:
            append_csv(log_path, row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == end:
            states = [None] * world
            if world > 1:
                torch.distributed.all_gather_object(states, rng_state(generator))
            else:
                states = rng_state(generator)
            if rank == 0:
                save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                            "scheduler": scheduler.state_dict(), "rng": states, "step": step,
                                            "first": first, "before": before, "model_config": dataclasses.asdict(model_config),
                                            "train_config": dataclasses.asdict(cfg)})
    bar.close()
    if rank == 0 and step == cfg.steps:
        model.save_pretrained(out_dir / "model")
    if not last and log_path.exists():
        last = read_csv(log_path)[-1]
    after = fixed_batch_losses(model, dataset, objectives, seed=cfg.seed)
    result = TrainResult(out_dir, step, first, last, before, after, time.perf_counter() - t0,
                         "bf16 autocast" if dtype else "fp32")
    if rank == 0 and step == cfg.steps:
        write_json_atomic(out_dir / RESULT, {k: v for k, v in dataclasses.asdict(result).items() if k != "out_dir"})
    return result


def read_result(out_dir) -> TrainResult:
    """The TrainResult a finished `pretrain` into `out_dir` saved (losses before and after, steps, time)."""
    path = Path(out_dir) / RESULT
    if not path.is_file():
        raise TrainError(f"{path} not found: {out_dir} holds no finished pretraining")
    return TrainResult(out_dir=Path(out_dir), **json.loads(path.read_text()))


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


def plot_losses(out_dirs: dict[str, str | os.PathLike], save_to: str | os.PathLike | None = None):
    """Loss curves per objective (one panel per loss) from each run's metrics.csv."""
    import matplotlib.pyplot as plt

    names = ("loss", "itc", "itm", "mlm")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), constrained_layout=True)
    for label, folder in out_dirs.items():
        rows = read_csv(Path(folder) / METRICS_CSV)
        for ax, name in zip(axes, names):
            if name in rows[0]:
                ax.plot([r["step"] for r in rows], [r[name] for r in rows], label=label)
    for ax, name in zip(axes, names):
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].legend()
    if save_to:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save_to, dpi=100)
    return fig


# presets and caching ------------------------------------------------------------------------------
def configs_for(preset: str, **overrides) -> tuple[KlipConfig, TrainConfig]:
    """The model and training configs of a preset; `overrides` set TrainConfig fields."""
    from .presets import section

    return KlipConfig(**section(preset, "model")), TrainConfig(**{**section(preset, "train"), **overrides})


def pretrain_dir(run_dir, objective: str) -> Path:
    """Where a run keeps the model pretrained with `objective`: run_dir/pretrain/<objective>/."""
    from .paths import run_path

    return run_path(run_dir, "pretrain", objective.replace("+", "_"))


# command line (also the torchrun entry point) ---------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m klip_lib.train", description=__doc__.split("\n")[0])
    p.add_argument("--shards", required=True, help="shard folder (klip_lib.data.build_shards)")
    p.add_argument("--out", required=True, help="output folder: checkpoint, metrics.csv, model/")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--model-config", help="JSON file of KlipConfig fields replacing the preset's model section")
    p.add_argument("--captions", help="captions JSONL (default: the facts' fallback sentences)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--allow-pickle", action="store_true",
                   help="resume from a checkpoint that needs unpickling (older versions wrote them; runs its code)")
    for f in dataclasses.fields(TrainConfig):
        kind = type(f.default)
        parse = (lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind
        p.add_argument(f"--{f.name.replace('_', '-')}", type=parse, default=None, help=f"TrainConfig.{f.name}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f.name) is not None}
    rank = dist.rank()
    try:
        model_config, cfg = configs_for(args.preset, **overrides)
        if args.model_config:
            model_config = KlipConfig.from_dict(json.loads(Path(args.model_config).read_text()), args.model_config)
        result = pretrain(args.shards, args.out, model_config, cfg, captions=args.captions, resume=not args.fresh,
                          allow_pickle=args.allow_pickle)
    except user_errors() as e:  # a missing or foreign input, a bad value: one line, no traceback
        print(f"klip train: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if rank == 0:
        print(json.dumps({"steps": result.steps, "before": result.before, "after": result.after,
                          "seconds": round(result.seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
