"""From a raw log (any source, original ids of any type) to `Interactions`: the integer arrays the splits
run on (NumPy or CuPy), plus what it takes to turn their indices back into the original ids.

Every reader (MovieLens files, users' files, folders, PostgreSQL snapshots) returns a `RawLog`: one
Arrow table with the columns user, item, rating, timestamp. Ids are int64 or strings, as the source
has them; nulls are kept, so the data checks (ncflow/data/checks.py) can count them.

String ids are dictionary-encoded here, on the CPU, once: each distinct id gets its rank among the
sorted distinct ids, so the splits see small integers whatever the source's ids look like, and
index -> original id is a `take` on the dictionary when the id maps are written. Integer ids pass
through untouched (no dictionary): MovieLens splits stay byte-identical and the GPU path keeps its
speed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ncflow.errors import NcflowError

COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass(frozen=True)
class RawLog:
    """A source's interactions as read: one row per source row, nothing dropped yet."""

    table: pa.Table  # user, item: int64 or string; rating: float32; timestamp: int64 ticks
    ticks_per_second: int  # the timestamp's unit (1: Unix seconds); 0: no time column (row order)
    name: str  # where it came from, for messages

    def __len__(self) -> int:
        return self.table.num_rows


@dataclass(frozen=True)
class Interactions:
    user: np.ndarray  # (N,) int64: original ids, or codes into user_dictionary
    item: np.ndarray  # (N,) int64: original ids, or codes into item_dictionary
    rating: np.ndarray  # (N,) float32; 1.0 where the source has no ratings
    timestamp: np.ndarray  # (N,) int64; the row number where the source has no times
    user_dictionary: pa.Array | None = None  # code -> original (string) id; None: `user` holds the ids
    item_dictionary: pa.Array | None = None
    ticks_per_second: int = 1  # the timestamp's unit; 0: no time column (row order)

    def __len__(self) -> int:
        return len(self.user)


def to_interactions(raw: RawLog, since: dt.date | None = None, until: dt.date | None = None) -> Interactions:
    """The rows of `raw` in [since, until) (00:00 UTC), ids encoded; NcflowError on nulls or no rows."""
    table = raw.table
    if table.num_rows == 0:
        raise NcflowError(f"{raw.name} holds no interactions")
    nulls = [name for name in COLUMNS if null_count(table.column(name))]
    if nulls:
        hint = " (--drop-null-ids drops rows without a user or item)" if {"user", "item"} & set(nulls) else ""
        raise NcflowError(f"{raw.name} has empty fields in its {', '.join(nulls)} column(s){hint}")
    if since is not None or until is not None:
        table = in_window(table, raw, since, until)
    user, user_dictionary = encode_ids(table.column("user"))
    item, item_dictionary = encode_ids(table.column("item"))
    return Interactions(
        user=user,
        item=item,
        rating=table.column("rating").to_numpy().astype(np.float32, copy=False),
        timestamp=table.column("timestamp").to_numpy().astype(np.int64, copy=False),
        user_dictionary=user_dictionary,
        item_dictionary=item_dictionary,
        ticks_per_second=raw.ticks_per_second,
    )


def null_count(column: pa.ChunkedArray) -> int:
    """Nulls, and for string ids empty strings too (a CSV's empty field reads as "")."""
    nulls = column.null_count
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        nulls += pc.sum(pc.equal(column, "")).as_py() or 0
    return nulls


def seconds_since_epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def in_window(table: pa.Table, raw: RawLog, since: dt.date | None, until: dt.date | None) -> pa.Table:
    if not raw.ticks_per_second:
        raise NcflowError(
            f"{raw.name} has no timestamp column: a time window (since/until/window_days) needs one "
            "(set the timestamp column's name)"
        )
    ticks = table.column("timestamp")
    keep = None
    if since is not None:
        keep = pc.greater_equal(ticks, seconds_since_epoch(since) * raw.ticks_per_second)
    if until is not None:
        before = pc.less(ticks, seconds_since_epoch(until) * raw.ticks_per_second)
        keep = before if keep is None else pc.and_(keep, before)
    kept = table.filter(keep)
    if kept.num_rows == 0:
        window = f"[{since or 'the start'}, {until or 'now'})"
        raise NcflowError(f"{raw.name} has no interactions in the time window {window}")
    return kept


def encode_ids(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array | None]:
    """(int64 codes, dictionary): integer ids as they are; strings as ranks among the sorted distinct ids."""
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64, copy=False), None
    distinct = pc.unique(column)
    dictionary = distinct.take(pc.array_sort_indices(distinct))
    codes = pc.index_in(column, value_set=dictionary)
    return codes.to_numpy().astype(np.int64, copy=False), dictionary


def original_ids(codes, dictionary: pa.Array | None) -> pa.Array:
    """Index -> original id, as an Arrow array (int64 or string) for the id maps."""
    codes = np.asarray(codes)
    if dictionary is None:
        return pa.array(codes.astype(np.int64, copy=False))
    return dictionary.take(pa.array(codes.astype(np.int64, copy=False)))
