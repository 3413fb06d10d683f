"""torchrun / torch.distributed: NCCL on GPUs, gloo on CPUs. One process = one rank."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def world_size_from_env() -> int:
    """The number of processes torchrun started (1 when run alone), before joining the group."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def init_from_env(device: torch.device, timeout: datetime.timedelta | None = None) -> DistContext:
    """Join the process group torchrun set up (WORLD_SIZE/RANK/LOCAL_RANK), or run alone.
    ``timeout``: how long a collective (a barrier) waits for the slowest rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(requested: torch.device, context: DistContext) -> torch.device:
    """Each rank takes its own GPU (LOCAL_RANK) when running on CUDA."""
    if requested.type == "cuda" and context.enabled:
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return requested


def mean_over_ranks(value: float, context: DistContext, device: torch.device) -> float:
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()
