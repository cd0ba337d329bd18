"""Gathering across ranks for the losses: a no-op (and no torch.distributed call) on a single process.

Every rank must hold the same local batch size (use `drop_last=True` in the sampler), so that rank r's
rows sit at `r * batch : (r + 1) * batch` of a gathered tensor, as in one process with the combined batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F


def is_distributed() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0; gradients flow back to the rank that owns each row."""
    if not is_distributed():
        return x
    return torch.cat(dist_fn.all_gather(x), dim=0)


@torch.no_grad()
def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0, without gradients (queues, ids, masks)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def local_rows(batch_size: int) -> slice:
    """The rows of this rank's local batch inside a gathered tensor."""
    r = rank()
    return slice(r * batch_size, (r + 1) * batch_size)


def pad_to_common_length(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token embeddings [B, L, H] and their mask [B, L] to the longest L of all ranks (mask 0 there)."""
    if not is_distributed():
        return embeds, mask
    length = torch.tensor([mask.shape[1]], device=mask.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    extra = int(length) - mask.shape[1]
    return F.pad(embeds, (0, 0, 0, extra)), F.pad(mask, (0, extra))


def check_equal_batches(batch_size: int, device: torch.device) -> None:
    """Raise when ranks hold different local batch sizes (gathered rows would not line up)."""
    if not is_distributed():
        return
    sizes = all_gather(torch.tensor([batch_size], device=device)).tolist()
    if len(set(sizes)) > 1:
        raise ValueError(
            f"local batch sizes differ across ranks ({sizes}): use a DistributedSampler with drop_last=True "
            "and a DataLoader with drop_last=True so every rank gets the same batch size"
        )


def global_mean(total: torch.Tensor, count: torch.Tensor | int) -> torch.Tensor:
    """This rank's share of a mean over all ranks' items: `total * world / global count`.

    `total` is the sum over this rank's items (with gradients), `count` their number. Averaged over
    ranks (as DDP averages gradients) the shares give the mean over the combined batch.
    """
    count = torch.as_tensor(count, dtype=torch.float32, device=total.device)
    if is_distributed():
        count = count.clone()
        dist.all_reduce(count)
    return total * world_size() / count.clamp_min(1.0)
