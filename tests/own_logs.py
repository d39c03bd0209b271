"""Interaction logs as users have them, for the tests: string ids (a 12-hex-digit customer, a SKU),
a rating and a time, as one CSV file or as a folder of hive-partitioned Parquet files. The rows are
synth-tiny's (learnable, 500 users x 300 items), so a model trained on them has something to learn."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from ncflow.data.synth import write_synthetic

LOG_FLAGS = ["--user-col", "customer", "--item-col", "sku", "--rating-col", "rating", "--timestamp-col", "ts"]
SMALL_NCF = ["--gpus", "0", "--epochs", "2", "--batch-size", "2048", "--mf-dim", "8", "--mlp-layers", "32,16"]


def customer(user: int) -> str:
    return hashlib.md5(str(user).encode()).hexdigest()[:12]


def string_log(folder: Path) -> pa.Table:
    """synth-tiny's ratings as customer (str), sku (str), rating (float), ts (int, Unix seconds)."""
    raw = pacsv.read_csv(write_synthetic("tiny", folder / "synth") / "ratings.csv")
    users = raw.column("userId").to_pylist()
    return pa.table(
        {
            "customer": pa.array([customer(u) for u in users]),
            "sku": pa.array([f"SKU-{i}" for i in raw.column("movieId").to_pylist()]),
            "rating": raw.column("rating").cast(pa.float64()),
            "ts": raw.column("timestamp"),
        }
    )


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


def write_lake(table: pa.Table, folder: Path) -> Path:
    """`folder/year=YYYY/part-0.parquet`, times as timestamp[us, UTC] (as a warehouse export has them)."""
    times = pc.cast(pc.multiply(table.column("ts"), 1_000_000), pa.timestamp("us", tz="UTC"))
    lake = table.set_column(table.schema.get_field_index("ts"), "ts", times)
    lake = lake.append_column("year", pc.strftime(times, "%Y"))
    ds.write_dataset(lake, folder, format="parquet", partitioning=["year"], partitioning_flavor="hive")
    return folder


START = 1_577_836_800  # 2020-01-01 UTC


def spread_over_time(table: pa.Table, days: int = 700) -> pa.Table:
    """The same rows, each user's history spread over `days` from 2020-01-01 (in its own order), so
    every user is active in any window; one user in ten only starts after 70% of the period, and
    another one in ten after 90% (new users, at two times)."""
    import numpy as np

    users = np.array(table.column("customer").to_pylist())
    order = np.lexsort((table.column("ts").to_numpy(), users))
    _, first, counts = np.unique(users[order], return_index=True, return_counts=True)
    rank = np.arange(len(order)) - np.repeat(first, counts)  # position in the user's own history
    n = np.repeat(counts, counts)
    group = np.repeat(np.arange(len(counts)) % 10, counts)
    begin = np.select([group == 0, group == 1], [0.7, 0.9], 0.0)
    ts = np.empty(len(order), np.int64)
    ts[order] = START + ((begin + (1 - begin) * (rank + 0.5) / n) * days * 86_400).astype(np.int64)
    return table.set_column(table.schema.get_field_index("ts"), "ts", pa.array(ts))
