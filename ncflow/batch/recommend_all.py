"""Every user's top-k from a model bundle, users partitioned across Dask workers, Parquet out.

    recommend_all(client, "ncf", bundle, None, k=100, out=Path("recs/"))        # part-00000.parquet, ...
    recommend_all(client, "vae-cf", bundle, processed, k=20, out=Path("recs.parquet"))  # one file

Each worker scores one contiguous range of users and writes its own part into a staging folder
beside the output; the folder (or, for a `.parquet` output, the parts joined into one file) replaces
the output only when every part is written, so a failure leaves no partial output. Workers must see
the same file system as the caller (always true on one host; across hosts, a shared mount).
Output columns: user_id, rank (1 = best), item_id (original ids) and score; seen items are never
recommended. Ranges start on multiples of the scorer's chunk, so the rows do not depend on the
number of workers.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ncflow.atomic import atomic_dir, atomic_file
from ncflow.errors import NcflowError


@dataclass(frozen=True)
class Job:
    """What a worker needs to build its scorer (paths, not arrays: each worker loads its own)."""

    model: str  # a registry name: ncf | vae-cf | vae-cf-ncf | ease | ease-vaecf
    bundle: str
    data_dir: str | None  # vae-cf: the processed dataset whose users are scored
    device: str = "auto"
    precision: str = "auto"
    chunk: int | None = None  # users per forward pass; None: the scorer's memory-based default


@functools.lru_cache(maxsize=2)  # per worker process: describe() and score_part() share one load
def scorer(job: Job):
    from ncflow.batch.user_scorer import ease_user_scorer, ncf_user_scorer, vaecf_user_scorer
    from ncflow.specs import spec

    kind = spec(job.model).package
    if kind == "ncf":
        loaded = ncf_user_scorer(Path(job.bundle), job.device, job.precision)
    elif kind == "ease":
        loaded = ease_user_scorer(Path(job.bundle), job.device)
    elif job.data_dir is None:
        raise ValueError("vae-cf scoring needs the processed dataset (data_dir)")
    else:
        loaded = vaecf_user_scorer(Path(job.bundle), Path(job.data_dir), job.device, job.precision)
    loaded.chunk = job.chunk or loaded.chunk
    return loaded


def describe(job: Job) -> dict[str, int]:
    """Sizes the caller checks k against and partitions by (run on a worker, which keeps the scorer)."""
    s = scorer(job)
    most, who = s.max_seen()
    return {"users": s.n_users, "items": s.n_items, "chunk": s.chunk, "max_seen": most, "max_seen_user": who}


def score_part(job: Job, lo: int, hi: int, k: int, path: str) -> int:
    """Users [lo, hi)'s top-k written to `path`; returns the row count."""
    table = scorer(job).top_k(lo, hi, k)
    write_part(table, Path(path))
    return table.num_rows


def write_part(table: pa.Table, path: Path) -> None:
    """One Parquet part, written under a temporary name and renamed: a reader sees it whole or not."""
    with atomic_file(path) as handle:
        pq.write_table(table, handle)


def check_k(k: int, sizes: dict[str, int]) -> None:
    if k <= 0:
        raise NcflowError(f"-k must be at least 1, got {k}")
    if k > sizes["items"]:
        raise NcflowError(
            f"-k {k} is above the model's item count ({sizes['items']}): use -k <= {sizes['items']}"
        )
    room = sizes["items"] - sizes["max_seen"]
    if k > room:
        raise NcflowError(
            f"-k {k}: user {sizes['max_seen_user']} has only {room} unseen items, so not every user can get "
            f"{k}: use -k <= {room}"
        )


def ranges(users: int, chunk: int, parts: int) -> list[tuple[int, int]]:
    """`parts` contiguous user ranges starting on chunk multiples (fewer when there are fewer chunks)."""
    chunks = -(-users // chunk)
    cuts = [chunks * p // parts for p in range(parts + 1)]
    return [(a * chunk, min(users, b * chunk)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def recommend_all(client, job: Job, k: int, out: Path) -> dict[str, int | str]:
    """Score every user of `job` on the workers of `client`; return rows, users, parts and the path."""
    if k <= 0:  # before any worker loads anything
        raise NcflowError(f"-k must be at least 1, got {k}")
    sizes = client.submit(describe, job, pure=False).result()
    check_k(k, sizes)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    spans = ranges(sizes["users"], sizes["chunk"], max(1, len(workers)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    single = out.suffix == ".parquet"
    if single:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.parts-", dir=out.parent))
        try:
            rows = _run(client, job, k, spans, workers, staging)
            with atomic_file(out) as handle:
                _join(sorted(staging.glob("part-*.parquet")), handle)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        with atomic_dir(out) as staging:
            rows = _run(client, job, k, spans, workers, staging)
    return {
        "rows": rows,
        "users": sizes["users"],
        "items": sizes["items"],
        "parts": len(spans),
        "path": str(out),
    }


def _run(client, job: Job, k: int, spans: list[tuple[int, int]], workers: list[str], folder: Path) -> int:
    """One part per range, pinned round-robin to the workers (another may take it if one dies)."""
    futures = [
        client.submit(
            score_part,
            job,
            lo,
            hi,
            k,
            str(folder / f"part-{p:05d}.parquet"),
            workers=[workers[p % len(workers)]] if workers else None,
            allow_other_workers=True,
            pure=False,
        )  # fmt: skip
        for p, (lo, hi) in enumerate(spans)
    ]
    try:
        return sum(client.gather(futures))
    except BaseException:
        client.cancel(futures)
        raise


def _join(parts: list[Path], handle) -> None:
    """The parts, in order, as one Parquet file (row group by row group: no part is held twice)."""
    writer = None
    for part in parts:
        table = pq.read_table(part)
        writer = writer or pq.ParquetWriter(handle, table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
