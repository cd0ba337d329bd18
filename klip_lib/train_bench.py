"""`klip bench pretrain`: training throughput and model FLOPs utilisation on synthetic batches.

FLOPs of one full training step (forward and backward of every objective) are counted once with
`torch.utils.flop_counter.FlopCounterMode`; MFU = FLOPs per step x steps per second / the device's dense
bf16 peak. Timed after warm-up, over at least 20 steps, with the device synchronised.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from .errors import positive_int

# dense bf16 peak FLOP/s by device name fragment (NVIDIA datasheets, without sparsity)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="gpu", help="model/train preset (default gpu)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--batch-size", type=positive_int, help="per-step batch (default: the preset's)")
    parser.add_argument("--image-size", type=positive_int, help="override the preset's image size (e.g. a small CPU check)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps (at least 20 for a reported figure)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--objective", default="itc+itm+mlm", choices=("itc", "itc+itm+mlm"), help="itc or itc+itm+mlm")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--peak-tflops", type=float, help="device peak bf16 TFLOP/s (default: known GPUs)")


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def synthetic_batch(config, batch_size: int, tokenizer, device: torch.device, generator: torch.Generator):
    """Images and full-length captions built from real words, so MLM finds knowledge slots to mask."""
    words = "the port has 3 cargo ships in the top-left water and 2 aircraft on the airport apron near urban blocks"
    text = " ".join([words] * (config.max_text_len // 10 + 1))
    tokens = tokenizer([text] * batch_size, padding="max_length", truncation=True, max_length=config.max_text_len,
                       return_tensors="pt")
    images = torch.randn(batch_size, config.in_chans, config.image_size, config.image_size, generator=generator)
    scene_ids = torch.arange(batch_size)
    return images.to(device), tokens["input_ids"].to(device), tokens["attention_mask"].to(device), scene_ids.to(device)


def bench(args: argparse.Namespace) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from .model import KlipModel
    from .train import OBJECTIVES, configs_for, param_groups, pick_device

    model_config, train_config = configs_for(args.preset)
    if args.image_size:
        model_config = dataclasses.replace(model_config, image_size=args.image_size)
    batch_size = args.batch_size or train_config.batch_size
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = KlipModel(model_config).to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, fused=device.type == "cuda")
    net = torch.compile(model) if args.compile else model
    generator = torch.Generator().manual_seed(0)
    images, ids, mask, scene_ids = synthetic_batch(model_config, batch_size, model.tokenizer, device, generator)
    objectives = OBJECTIVES[args.objective]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            loss = net(images, ids, mask, scene_ids, objectives=objectives, generator=generator)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    tokens = float(mask.sum())
    peak = peak_flops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device            {name}")
    print(f"preset            {args.preset}: {model_config.image_encoder} at {model_config.image_size} px, "
          f"text {model_config.text_layers}x{model_config.text_hidden}, batch {batch_size}, "
          f"{args.objective}, {'bf16' if device.type == 'cuda' else 'fp32'}{', compiled' if args.compile else ''}")
    print(f"step time         {seconds * 1e3:.1f} ms over {args.steps} steps after {args.warmup} warm-up")
    print(f"images/s          {batch_size / seconds:.1f}")
    print(f"tokens/s          {tokens / seconds:.0f}")
    print(f"FLOPs/step        {flops / 1e12:.3f} TFLOP (torch.utils.flop_counter)")
    print(f"achieved          {flops / seconds / 1e12:.2f} TFLOP/s")
    if device.type == "cuda":
        print(f"peak memory       {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"MFU               {f'{100 * flops / seconds / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16' if peak else 'n/a (no known peak for this device; pass --peak-tflops)'}")
    return 0
