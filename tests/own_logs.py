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


# A shop's log, shaped like the UCI Online Retail file: invoices with string stock codes (85123A),
# descriptions, quantities (a return is a negative one), times as M/D/YYYY H:MM, customer ids as
# "17850.0" with a quarter of the rows empty, ending 2011-12-09 (in the past).
RETAIL_FLAGS = [
    "--user-col", "CustomerID", "--item-col", "StockCode", "--timestamp-col", "InvoiceDate",
    "--time-format", "%m/%d/%Y %H:%M", "--title-col", "Description",
]  # fmt: skip
RETAIL_START, RETAIL_END = 1_291_191_960, 1_323_433_800  # 2010-12-01 08:26, 2011-12-09 12:30 UTC


def stock_code(item: int) -> str:
    return f"{84000 + item}" if item % 3 else f"{84000 + item}A"


def retail_log(folder: Path) -> pa.Table:
    """synth-tiny's rows as a shop's purchases (learnable: 500 customers x 300 items), plus a return
    (negative quantity, a day later) for one purchase in twenty; a quarter of the rows have no
    customer, and one row in fifty has a stray description ("?") beside the item's usual one."""
    import datetime as dt

    import numpy as np

    raw = pacsv.read_csv(write_synthetic("tiny", folder / "synth") / "ratings.csv")
    users, items = raw.column("userId").to_numpy(), raw.column("movieId").to_numpy()
    ts = raw.column("timestamp").to_numpy().astype(np.float64)
    span = ts.max() - ts.min()
    seconds = (RETAIL_START + (ts - ts.min()) / span * (RETAIL_END - RETAIL_START - 86_400)).astype(np.int64)
    rng = np.random.default_rng(0)
    quantity = rng.integers(1, 13, len(users))
    returned = np.flatnonzero(np.arange(len(users)) % 20 == 7)
    users = np.concatenate([users, users[returned]])
    items = np.concatenate([items, items[returned]])
    seconds = np.concatenate([seconds, seconds[returned] + 86_400])
    quantity = np.concatenate([quantity, -quantity[returned]])
    n = len(users)
    anonymous = rng.random(n) < 0.25
    stray = np.arange(n) % 50 == 3
    order = np.argsort(seconds, kind="stable")
    codes = [stock_code(int(i)) for i in items]
    first = int(np.flatnonzero(items[order] % 3 == 0)[0])  # the first row's code has a letter, as in UCI
    order = np.concatenate([[order[first]], np.delete(order, first)])

    def when(s: int) -> str:
        t = dt.datetime.fromtimestamp(int(s), dt.UTC)
        return f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}"

    return pa.table(
        {
            "InvoiceNo": [("C" if quantity[r] < 0 else "") + str(536365 + r) for r in order],
            "StockCode": [codes[r] for r in order],
            "Description": ["?" if stray[r] else f"PRODUCT {codes[r]}" for r in order],
            "Quantity": pa.array(quantity[order], pa.int64()),
            "InvoiceDate": [when(seconds[r]) for r in order],
            "UnitPrice": pa.array(np.round(1 + items[order] % 7 * 0.85, 2)),
            "CustomerID": [None if anonymous[r] else f"{12346 + users[r]}.0" for r in order],
            "Country": ["United Kingdom"] * n,
        }
    )


def retail_customer(user: int) -> float:
    """The CustomerID a synth-tiny user has in `retail_log` (read back as a whole number)."""
    return 12346 + user
