"""Process-group setup from torchrun's environment: NCCL on GPUs, gloo on CPUs, or a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The trainer processes of one run on this machine, over all its torchrun agents (ncflow/nodes.py).
HOST_PROCESSES = "NCFLOW_HOST_PROCESSES"


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
        torch.set_num_threads(cpu_threads())
    if world_size > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=where if use_cuda else None)
    return Dist(rank, local_rank, world_size, where)


def cpu_threads() -> int:
    """Intra-op threads of one CPU process: this machine's cores shared by the trainer processes on it.

    Processes that share cores must not each take all of them: OpenMP threads spin while they wait,
    and oversubscribed ones starve the threads doing the work. Two single-process nodes on one 2-core
    host (the 127.0.0.1 stand-in for two machines) took 2 threads each, and their first epoch ran
    5-25x slower than one node with 2 processes (bench/RESULTS.md section 11). torchrun's
    LOCAL_WORLD_SIZE counts only one agent's processes; ncflow/nodes.py sets NCFLOW_HOST_PROCESSES
    when it places several agents on one host.
    """
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on (cgroups, taskset)
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    sharing = os.environ.get(HOST_PROCESSES) or os.environ.get("LOCAL_WORLD_SIZE") or "1"
    return max(1, cores // max(1, int(sharing)))


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
