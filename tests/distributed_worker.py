"""Train the tiny model for a few steps on one combined batch; run alone or under torchrun (gloo, CPU).

Under torchrun each rank takes its slice of the batch and gradients are averaged as DDP does; alone, one
process takes the whole batch. Both write the global losses per step and a weight checksum to a JSON file.
Usage: python tests/distributed_worker.py OUT.json   |   torchrun --nproc_per_node 2 tests/distributed_worker.py OUT.json
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from klip_tiny import tiny_batch, tiny_model

from klip_lib import dist as kdist

STEPS = 3  # queue 16, combined batch 8: step 2 reads a half-full queue, step 3 a full one
SCENES = ["a", "b", "c", "d", "e", "f", "g", "a"]  # rank 0's "a" and rank 1's "a": one scene across ranks
LOSSES = ("itc", "itc_i2t", "itc_t2i", "itm", "mlm", "loss")


def run() -> dict:
    """Losses (averaged over ranks, i.e. of the combined batch) per step and the final weights' checksum."""
    model = tiny_model(seed=0)
    batch = tiny_batch(model, n=len(SCENES), seed=1, scenes=SCENES)
    rows = kdist.local_rows(len(SCENES) // kdist.world_size())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    model.train()
    history = []
    for step in range(STEPS):
        out = model(
            batch["images"][rows],
            batch["input_ids"][rows],
            batch["attention_mask"][rows],
            batch["scene_ids"][rows],
            generator=torch.Generator().manual_seed(step),
            mlm_inputs=tuple(t[rows] for t in batch["mlm_inputs"]),
        )
        out["loss"].backward()
        losses = torch.stack([out[k].detach() for k in LOSSES])
        if kdist.is_distributed():
            for p in params:
                dist.all_reduce(p.grad)
                p.grad /= kdist.world_size()
            dist.all_reduce(losses)
            losses /= kdist.world_size()
        optimizer.step()
        optimizer.zero_grad()
        history.append(dict(zip(LOSSES, losses.tolist(), strict=True)))
    checksum = sum(float(p.detach().double().abs().sum()) for p in model.parameters())
    return {"losses": history, "checksum": checksum, "queue_filled": int(model.queue_filled)}


if __name__ == "__main__":
    if "RANK" in os.environ:  # launched by torchrun
        dist.init_process_group("gloo")
    result = run()
    if kdist.rank() == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f)
    if dist.is_initialized():
        dist.destroy_process_group()
