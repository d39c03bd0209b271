"""Every ml-20m-sized user's top-k on the GPU: 138,493 users x 26,744 items, Parquet written.

    python bench/recommend_all.py --json out.json                    # NCF and Mult-VAE, one GPU, in-process
    python bench/recommend_all.py --model ncf --dask --workers 2     # also through Dask (dask-cuda)
    python bench/recommend_all.py --users 2000 --items 500 --seen 20000 --device cpu   # a CPU smoke run

Synthetic models with random weights in NVIDIA's ml-20m shapes (NeuMF 64 / [256, 256, 128, 64];
Mult-VAE [I -> 600 -> 200]) and ~20M random seen items (ml-20m's count). What is timed:
- `score_write_s`: every user scored against every item, seen items masked, top-k, the rows copied to
  the host and written as one Parquet file (ncflow.batch.user_scorer.UserScorer.top_k, which runs
  models/common/full_rank.rank_users, + ncflow.batch.recommend_all.write_part);
- `load_s`: reading the bundle and building the scorer (once per worker per job);
- with --dask: `recommend_all` end to end on a started LocalCUDACluster (one part per GPU).
The first in-process pass is a warm-up; the figure is the best of --repeats. Needs only torch, numpy,
pyarrow and safetensors; dask (and dask-cuda on GPUs) only with --dask.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ncf.model import NeuMF, NeuMFConfig  # noqa: E402
from models.vaecf.model import MultVAE, VAEConfig  # noqa: E402
from ncflow.batch.recommend_all import Job, write_part  # noqa: E402
from ncflow.batch.user_scorer import ncf_user_scorer, vaecf_user_scorer  # noqa: E402

SPLITS = ("train", "valid_foldin", "valid_target", "test_foldin", "test_target")


def seen_csr(users: int, items: int, total: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, sorted item indices): ~`total` distinct random items, long-tailed per user."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, users)
    counts = np.clip((weights / weights.sum() * total).astype(np.int64), 20, items // 2)
    user = np.repeat(np.arange(users, dtype=np.int64), counts)
    keys = np.unique(user * items + rng.integers(0, items, len(user)))
    counts = np.bincount(keys // items, minlength=users)
    return np.concatenate([[0], np.cumsum(counts)]), (keys % items).astype(np.int32)


def common_files(folder: Path, items: int, config: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text("{}")
    (folder / "data.json").write_text(json.dumps({"source": {"md5": "bench"}}))
    ids = np.arange(1, items + 1, dtype=np.int64)
    pq.write_table(
        pa.table(
            {"index": np.arange(items, dtype=np.int32), "id": ids, "title": pa.nulls(items, pa.string())}
        ),
        folder / "items.parquet",
    )


def ncf_bundle(folder: Path, users: int, items: int, indptr: np.ndarray, seen: np.ndarray) -> Path:
    config = NeuMFConfig(users, items)
    model = NeuMF(config)
    common_files(
        folder, items, {"model": {**config.__dict__, "mlp_layers": list(config.mlp_layers)}, "train": {}}
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    pq.write_table(
        pa.table({"index": np.arange(users, dtype=np.int32), "id": np.arange(1, users + 1)}),
        folder / "users.parquet",
    )
    lists = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(seen))
    pq.write_table(pa.table({"items": lists}), folder / "seen.parquet")
    return folder


def vae_bundle(
    folder: Path, data: Path, users: int, items: int, indptr: np.ndarray, seen: np.ndarray
) -> Path:
    config = VAEConfig(items)
    model = MultVAE(config)
    common_files(folder, items, {"model": config.__dict__, "train": {}})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    data.mkdir(parents=True)
    lists = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(seen))
    pq.write_table(pa.table({"user_id": np.arange(1, users + 1), "items": lists}), data / "train.parquet")
    empty = pa.ListArray.from_arrays(pa.array([0], pa.int32()), pa.array([], pa.int32()))
    for name in SPLITS[1:]:
        pq.write_table(
            pa.table({"user_id": pa.array([], pa.int64()), "items": empty}), data / f"{name}.parquet"
        )
    return folder


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_inprocess(make, k: int, repeats: int, out: Path) -> dict:
    start = time.perf_counter()
    scorer = make()
    sync(scorer.device)
    load = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats + 1):  # the first pass warms up kernels and the allocator
        out.unlink(missing_ok=True)
        sync(scorer.device)
        start = time.perf_counter()
        write_part(scorer.top_k(0, scorer.n_users, k), out)  # top_k ends on host copies: synced
        best = min(best, time.perf_counter() - start)
    return {
        "load_s": round(load, 3),
        "score_write_s": round(best, 3),
        "rows": pq.ParquetFile(out).metadata.num_rows,
        "chunk_users": scorer.chunk,
    }


def time_dask(job: Job, k: int, workers: int | None, out: Path) -> dict:
    from ncflow.batch.cluster import dask_client  # dask only here: the in-process figures need none
    from ncflow.batch.recommend_all import recommend_all

    with dask_client(workers=workers, device=job.device) as client:
        n = len(client.scheduler_info()["workers"])
        first_start = time.perf_counter()
        recommend_all(client, job, k, out)  # loads the scorer on every worker
        first = time.perf_counter() - first_start
        start = time.perf_counter()
        result = recommend_all(client, job, k, out)  # scorers cached: scoring and writing only
        again = time.perf_counter() - start
    return {
        "workers": n,
        "first_job_s": round(first, 3),
        "warm_job_s": round(again, 3),
        "rows": result["rows"],
        "parts": result["parts"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["ncf", "vae-cf", "both"], default="both")
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--seen", type=int, default=20_000_263, help="seen (user, item) pairs in all")
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--dask", action="store_true", help="also through recommend_all on a LocalCUDACluster"
    )
    parser.add_argument("--workers", type=int, help="--dask: GPUs (default all)")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ncflow-bench-recommend-"))
    gpu = args.device != "cpu" and torch.cuda.is_available()
    results: dict = {
        "users": args.users, "items": args.items, "k": args.k,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
    }  # fmt: skip
    try:
        indptr, seen = seen_csr(args.users, args.items, args.seen)
        results["seen_pairs"] = int(len(seen))
        torch.manual_seed(0)
        models = ["ncf", "vae-cf"] if args.model == "both" else [args.model]
        for name in models:
            if name == "ncf":
                bundle = ncf_bundle(tmp / "ncf", args.users, args.items, indptr, seen)
                job = Job("ncf", str(bundle), None, args.device)
                make = functools.partial(ncf_user_scorer, bundle, args.device)
            else:
                bundle = vae_bundle(tmp / "vae", tmp / "vae-data", args.users, args.items, indptr, seen)
                job = Job("vae-cf", str(bundle), str(tmp / "vae-data"), args.device)
                make = functools.partial(vaecf_user_scorer, bundle, tmp / "vae-data", args.device)
            results[name] = time_inprocess(make, args.k, args.repeats, tmp / f"{name}.parquet")
            if args.dask:
                results[name]["dask"] = time_dask(job, args.k, args.workers, tmp / f"{name}-dask")
            print(json.dumps({name: results[name]}), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
