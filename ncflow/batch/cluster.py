"""Which Dask cluster scores the users: one worker per GPU (dask-cuda), CPU processes, or an existing one.

The scoring code does not know which: it receives a `distributed.Client` either way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ncflow.errors import NcflowError


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


@contextlib.contextmanager
def dask_client(
    workers: int | None = None, scheduler: str | None = None, device: str = "auto", timeout: float = 10.0
) -> Iterator:
    """A Client to `scheduler` (another host's cluster, joined for this block), else a local cluster
    started for this block: LocalCUDACluster with one worker per GPU (the first `workers` of them) when
    there are GPUs and `device` allows, LocalCluster of `workers` single-threaded processes otherwise."""
    from distributed import Client

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise NcflowError(
                f"no Dask scheduler answered at {scheduler} within {timeout:g} s ({type(err).__name__})"
            ) from None
        with client:
            yield client
        return
    with local_cluster(workers, device) as cluster, Client(cluster) as client:
        yield client


def local_cluster(workers: int | None = None, device: str = "auto"):
    """LocalCUDACluster, one worker per GPU (the first `workers` GPUs), when there are GPUs and `device`
    allows; else a LocalCluster of `workers` (default 1) single-threaded processes. prefect-dask's
    DaskTaskRunner calls this too (cluster_class), so sweeps and scoring share one rule."""
    from distributed import LocalCluster

    gpus = gpu_count() if device in ("auto", "cuda") else 0
    if device == "cuda" and gpus == 0:
        raise NcflowError("--device cuda asked for, but this machine has no GPU: use --device cpu")
    if workers is not None and workers < 1:
        raise NcflowError(f"--workers must be at least 1, got {workers}")
    quiet = {"dashboard_address": None, "silence_logs": logging.ERROR}
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise NcflowError(
                "scoring on GPUs needs dask-cuda: pip install -e '.[gpu]' (or --device cpu)"
            ) from None
        n = min(workers or gpus, gpus)
        return LocalCUDACluster(CUDA_VISIBLE_DEVICES=list(range(n)), **quiet)
    return LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, **quiet)
