"""`klip bench pretrain`: training throughput and model FLOPs utilisation on synthetic batches.

FLOPs of one full training step (forward and backward of every objective) are counted once with
`torch.utils.flop_counter.FlopCounterMode`; MFU = FLOPs per step x steps per second / the device's dense
bf16 peak. Timed after warm-up, over at least 20 steps, with the device synchronised. On CPU the load average and
the process's CPU time per step are printed too: on a machine other jobs load, wall-clock images/s measure the
load as much as the step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

from .errors import positive_int

# dense bf16 peak FLOP/s by device name fragment (NVIDIA datasheets, without sparsity)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="gpu", help="model/train preset (default gpu)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--batch-size", help="per-step batch, or a comma list to sweep (default: the preset's)")
    parser.add_argument("--image-size", type=positive_int, help="override the preset's image size (e.g. a small CPU check)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps (at least 20 for a reported figure)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--objective", default="itc+itm+mlm", choices=("itc", "itc+itm+mlm"), help="itc or itc+itm+mlm")
    parser.add_argument("--compile", action="store_true", help="also time the compiled training step (compile_step)")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                        help="auto: bf16 autocast on CUDA and on CPUs with AMX/AVX512-BF16, fp32 elsewhere")
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
    from .train import autocast_dtype, configs_for, cpu_has_bf16, pick_device

    model_config, train_config = configs_for(args.preset)
    if args.image_size:
        model_config = dataclasses.replace(model_config, image_size=args.image_size)
    device = pick_device(args.device)
    dtype = autocast_dtype(device, args.precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device            {name}" + (f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
                                         if device.type == "cpu" else ""))
    print(f"precision         {'bf16 autocast' if dtype else 'fp32'} (--precision {args.precision}"
          f"{', CPU native bf16: ' + ('yes' if cpu_has_bf16() else 'no') if device.type == 'cpu' else ''})")
    sizes = [int(b) for b in args.batch_size.split(",")] if args.batch_size else [train_config.batch_size]
    for batch_size in sizes:
        for compiled in (False, True) if args.compile else (False,):
            bench_one(args, model_config, device, dtype, batch_size, compiled)
    return 0


def bench_one(args, model_config, device: torch.device, dtype, batch_size: int, compiled: bool) -> None:
    """Time one configuration and print its figures."""
    import resource

    from torch.utils.flop_counter import FlopCounterMode

    from .model import KlipModel
    from .train import OBJECTIVES, param_groups

    torch.manual_seed(0)
    model = KlipModel(model_config).to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(0)
    images, ids, mask, scene_ids = synthetic_batch(model_config, batch_size, model.tokenizer, device, generator)
    objectives = OBJECTIVES[args.objective]
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def step():
        with autocast:
            loss = model(images, ids, mask, scene_ids, objectives=objectives, generator=generator)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with FlopCounterMode(display=False) as counter:  # eager: the counter sees every op
        step()
    flops = counter.get_total_flops()
    if compiled:
        model.compile_step()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warmup_seconds = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    walls, cpus = [], []  # per step: a recompile inside the timed steps (a new MLM slot count) shows as one outlier
    for _ in range(args.steps):
        t0, cpu0 = time.perf_counter(), time.process_time()
        step()
        sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - cpu0)
    seconds, cpu_seconds = statistics.median(walls), statistics.median(cpus)
    tokens = float(mask.sum())
    peak = peak_flops(device, args.peak_tflops)
    threads = torch.get_num_threads()
    print(f"--- batch {batch_size}, {'compiled' if compiled else 'eager'}: {args.preset} preset, "
          f"{model_config.image_encoder} at {model_config.image_size} px, text {model_config.text_layers}x"
          f"{model_config.text_hidden}, {args.objective}")
    if compiled:
        print(f"compile time      {warmup_seconds:.1f} s (the {args.warmup} warm-up steps, compilation included)")
    print(f"step time         {seconds * 1e3:.1f} ms, median of {args.steps} steps after {args.warmup} warm-up (mean "
          f"{statistics.mean(walls) * 1e3:.1f}, slowest {max(walls) * 1e3:.1f}: a recompile or another process)")
    print(f"images/s          {batch_size / seconds:.1f}"
          + (f" ({batch_size / seconds / threads:.1f} per core, {threads} threads)" if device.type == "cpu" else ""))
    if device.type == "cpu":  # CPU time is what the step cost this process; wall time also counts other processes
        print(f"CPU time/step     {cpu_seconds * 1e3:.1f} ms median, all threads ({batch_size / cpu_seconds:.1f} images per "
              "CPU-second)")
    print(f"tokens/s          {tokens / seconds:.0f}")
    print(f"FLOPs/step        {flops / 1e12:.3f} TFLOP (torch.utils.flop_counter)")
    print(f"achieved          {flops / seconds / 1e12:.2f} TFLOP/s")
    if device.type == "cuda":
        print(f"peak memory       {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    else:
        print(f"peak memory       {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)")
    print(f"MFU               {f'{100 * flops / seconds / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s bf16' if peak else 'n/a (no known peak for this device; pass --peak-tflops)'}")
