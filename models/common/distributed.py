"""Process-group setup from torchrun's environment: NCCL on GPUs, gloo on CPUs, or a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int  # global: shard data by this, never by local_rank (wrong on several nodes)
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (RANK set); else run as one process."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but no CUDA GPU is visible")
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(
                f"error: {world_size} processes asked for, but only {torch.cuda.device_count()} GPUs"
            )
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
        # Processes share the cores: oversubscribed BLAS threads make gloo runs crawl.
        torch.set_num_threads(
            max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
        )
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=where if use_cuda else None)
    return Dist(rank, local_rank, world_size, where)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sync(device: torch.device) -> None:
    """Wait for the device, so that a host clock read after it measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
