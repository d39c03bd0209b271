"""`ncflow recommend --all ...`: every user's top-k, one Parquet part per Dask worker (or one file)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ncflow.errors import NcflowError


def run(args: argparse.Namespace, dataset: str) -> None:
    from ncflow.batch.cluster import dask_client
    from ncflow.batch.locate import locate_job
    from ncflow.batch.recommend_all import recommend_all

    if args.user is not None or args.items is not None:
        raise NcflowError("--all scores every user: leave out --user and --items")
    if args.out is None:
        raise NcflowError("--all needs --out: a folder (one Parquet part per worker) or a .parquet file")
    if args.users_per_chunk is not None and args.users_per_chunk < 1:
        raise NcflowError(f"--users-per-chunk must be at least 1, got {args.users_per_chunk}")
    job = locate_job(
        args.model, dataset, args.version, Path(args.registry_dir), Path(args.data_dir), args.device,
        chunk=args.users_per_chunk,
    )  # fmt: skip
    start = time.perf_counter()
    with dask_client(args.workers, args.scheduler, args.device, args.connect_timeout) as client:
        result = recommend_all(client, job, args.k, Path(args.out))
    seconds = time.perf_counter() - start
    print(
        f"{result['rows']:,} rows: {result['users']:,} users x top-{args.k} of {result['items']:,} items, "
        f"{result['parts']} part(s), {seconds:.1f} s, from {job.bundle}"
    )
    print(result["path"])


def add_arguments(rec: argparse.ArgumentParser) -> None:
    rec.add_argument("--all", action="store_true", help="every user's top-k, written as Parquet to --out")
    rec.add_argument("--out", help="--all: a folder (part-00000.parquet, ...) or a file ending in .parquet")
    rec.add_argument("--workers", type=int, help="--all: Dask workers (default: every GPU, or 1 CPU process)")
    rec.add_argument("--scheduler", help="--all: join this Dask cluster (tcp://host:8786) instead")
    rec.add_argument(
        "--connect-timeout", type=float, default=10.0, help="--all: seconds to reach --scheduler"
    )
    rec.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="--all: where to score"
    )
    rec.add_argument(
        "--users-per-chunk", type=int, help="--all: users per forward pass (default: sized to memory)"
    )
