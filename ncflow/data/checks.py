"""Data checks before training, after TFX's ExampleValidator: a run that would train on a broken export
stops here, with one line saying why, before anything is trained or registered.

Each check looks at the whole source as read (`RawLog`), not only the time window a run trains on: a
half-empty export is broken whatever the window. What each one refuses:
- schema and types: a missing column, an id that is neither integer nor string, a rating that is not a
  number, a time that is not a time (raised by the readers; reported here);
- nulls: any row without a user, an item, a rating or a time (empty strings count for string ids);
  rows without a user or item id are only counted when the run drops them (`drop_null_ids`);
- duplicate rows: more than `max_duplicate_share` of rows repeating another row exactly (a partition
  loaded twice); repeated (user, item) pairs at different times are ordinary and allowed;
- timestamps: any time in the future (beyond a day of clock skew) or at or before 1970-01-01 (a
  default value, not a time);
- row count: fewer rows than the previous accepted snapshot by more than `max_row_drop`;
- new users and items: counted against the previous snapshot; refused only when every id is new, or the
  users look like the previous items and the items like the previous users: a changed column mapping
  (user and item columns swapped), not new customers.

The report's picture of daily volume covers the run's whole time window (the whole source without
one) and marks the days that hold a refused row: a time in the future, a null, an exact repeat when
repeats were refused. A drop in rows is the whole source's, not a day's: it has no mark.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ncflow.data.interactions import COLUMNS, RawLog, null_count
from ncflow.data.snapshots import Snapshot

CLOCK_SKEW_S = 86_400  # a time up to a day ahead is a clock, not a bug


@dataclass(frozen=True)
class CheckLimits:
    max_row_drop: float = 0.3  # share of the previous snapshot's rows
    max_duplicate_share: float = 0.1  # share of rows


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str  # one line


@dataclass
class DataReport:
    dataset: str
    checks: list[Check]
    snapshot: Snapshot | None  # what this source is now (None: it could not be read)
    previous: Snapshot | None
    window_rows: int | None = None  # rows in the run's time window, when it has one
    daily: list[tuple[dt.date, int]] = field(default_factory=list)  # (day, rows), each day of the window
    failing_days: dict[dt.date, list[str]] = field(default_factory=dict)  # day -> checks its rows fail

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        """The failed checks in one line (empty when all passed)."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)


def unreadable(dataset: str, problem: str, previous: Snapshot | None) -> DataReport:
    """The report of a source that failed its schema check while being read."""
    return DataReport(dataset, [Check("schema and types", False, problem)], None, previous)


def check_log(
    dataset: str,
    raw: RawLog,
    snapshot: Snapshot,
    previous: Snapshot | None,
    limits: CheckLimits,
    now: dt.datetime | None = None,
    window_rows: int | None = None,
    drop_null_ids: bool = False,
    window: tuple[dt.date | None, dt.date | None] = (None, None),
) -> DataReport:
    """Every check on `raw` (whose summary is `snapshot`) against the `previous` accepted snapshot;
    `window` is the run's [since, until), drawn whole in the report's daily volume."""
    now = now or dt.datetime.now(dt.UTC)
    table = raw.table
    checks = [
        Check("schema and types", True, schema_line(table, raw.ticks_per_second)),
        nulls_check(table, raw, drop_null_ids),
        duplicates_check(table, limits.max_duplicate_share),
        timestamps_check(table, raw.ticks_per_second, now),
        row_count_check(snapshot, previous, limits.max_row_drop),
        new_ids_check(snapshot, previous),
    ]
    tps = raw.ticks_per_second
    failed = {c.name for c in checks if not c.passed}
    return DataReport(
        dataset, checks, snapshot, previous, window_rows, daily_volume(table, tps, *window),
        failing_days(table, tps, failed, now),
    )  # fmt: skip


def schema_line(table: pa.Table, ticks_per_second: int) -> str:
    unit = {0: "none: row order", 1: "seconds", 1_000: "ms", 1_000_000: "us", 1_000_000_000: "ns"}
    kinds = {name: str(table.schema.field(name).type) for name in ("user", "item")}
    return f"user {kinds['user']}, item {kinds['item']}, rating number, time {unit[ticks_per_second]}"


def nulls_check(table: pa.Table, raw: RawLog, drop_null_ids: bool = False) -> Check:
    counts = {name: null_count(table.column(name)) for name in COLUMNS}
    bad = {name: n for name, n in counts.items() if n}
    if not bad:
        return Check("nulls", True, "none")
    described = ", ".join(f"{n:,} without a {name}" for name, n in bad.items())
    ids = {"user", "item"} & set(bad)
    if drop_null_ids and not set(bad) - ids:
        return Check("nulls", True, f"{described} (null or empty): dropped (--drop-null-ids)")
    hint = "; --drop-null-ids drops rows without a user or item" if ids and not drop_null_ids else ""
    return Check("nulls", False, f"{described} (null or empty) in {raw.name}{hint}")


def duplicates_check(table: pa.Table, max_share: float) -> Check:
    distinct = table.group_by(list(COLUMNS)).aggregate([]).num_rows
    repeats = table.num_rows - distinct
    share = repeats / max(table.num_rows, 1)
    detail = f"{repeats:,} rows ({share:.1%}) repeat another row exactly"
    if share > max_share:
        return Check(
            "duplicate rows", False, f"{detail}: above the limit of {max_share:.0%} (a load done twice?)"
        )
    return Check("duplicate rows", True, detail)


def timestamps_check(table: pa.Table, ticks_per_second: int, now: dt.datetime) -> Check:
    if not ticks_per_second:
        return Check("timestamps", True, "no time column: row order is time order")
    ticks = table.column("timestamp")
    limit = (int(now.timestamp()) + CLOCK_SKEW_S) * ticks_per_second
    future = pc.sum(pc.greater(ticks, limit)).as_py() or 0
    zero = pc.sum(pc.less_equal(ticks, 0)).as_py() or 0
    span = pc.min_max(ticks)
    first, last = (day(span[k].as_py(), ticks_per_second) for k in ("min", "max"))
    if future or zero:
        parts = [
            f"{future:,} in the future (latest {last})" if future else "",
            f"{zero:,} at or before 1970-01-01" if zero else "",
        ]
        return Check("timestamps", False, " and ".join(p for p in parts if p))
    return Check("timestamps", True, f"from {first} to {last}")


def row_count_check(snapshot: Snapshot, previous: Snapshot | None, max_drop: float) -> Check:
    if previous is None:
        return Check("row count", True, f"{snapshot.rows:,} rows (no previous snapshot to compare with)")
    change = snapshot.rows / max(previous.rows, 1) - 1
    detail = f"{snapshot.rows:,} rows, {change:+.1%} against the previous snapshot's {previous.rows:,}"
    if -change > max_drop:
        return Check("row count", False, f"{detail}: a drop above the limit of {max_drop:.0%}")
    return Check("row count", True, detail)


def new_ids_check(snapshot: Snapshot, previous: Snapshot | None) -> Check:
    sizes = f"{snapshot.n_users:,} users, {snapshot.n_items:,} items"
    if previous is None:
        return Check("new users and items", True, sizes)
    users, items = snapshot.overlap(previous, "users"), snapshot.overlap(previous, "items")
    detail = (
        f"{sizes}: {snapshot.n_users - users:,} new users and {snapshot.n_items - items:,} new items "
        "since the previous snapshot"
    )
    # Swapped columns: today's users are yesterday's items and the other way round. Integer ids of both
    # kinds overlap by chance (users 1-943, items 1-1682), so it is the swap explaining the ids better
    # than the mapping does, on both sides, that counts
    cross_users, cross_items = snapshot.cross_overlap(previous)
    swapped = cross_users >= users and cross_items >= items and cross_users + cross_items > users + items
    if (users == 0 and items == 0 and previous.rows) or swapped:
        what = "the users look like its items and the items like its users" if swapped else "every id is new"
        return Check(
            "new users and items", False,
            f"{detail}: {what} against the previous snapshot; the user and item columns may be swapped "
            "(--user-col, --item-col) or the mapping changed (a new log: remove its snapshot folder)",
        )  # fmt: skip
    return Check("new users and items", True, detail)


def day(ticks: int, ticks_per_second: int) -> dt.date:
    return dt.datetime.fromtimestamp(ticks // ticks_per_second, dt.UTC).date()


def _days(ticks: pa.Array | pa.ChunkedArray, ticks_per_second: int) -> np.ndarray:
    """Days since 1970-01-01 (floored: a time before it falls on a day before it)."""
    return np.floor_divide(np.asarray(ticks, dtype=np.int64), 86_400 * ticks_per_second)


def daily_volume(
    table: pa.Table, ticks_per_second: int, since: dt.date | None = None, until: dt.date | None = None
) -> list[tuple[dt.date, int]]:
    """Rows per day, every day from `since` (else the first day after 1970-01-01 with rows) to the day
    before `until` (else the last day with rows, future ones included): the window a run trains on,
    empty days and all (none without a time column)."""
    if not ticks_per_second or table.num_rows == 0:
        return []
    days = _days(table.column("timestamp").drop_null(), ticks_per_second)
    days = days[days > 0]  # at or before 1970-01-01 is a default value, not a day (the timestamps check)
    epoch = dt.date(1970, 1, 1)
    first = (since - epoch).days if since else (int(days.min()) if len(days) else None)
    last = (until - epoch).days - 1 if until else (int(days.max()) if len(days) else None)
    if first is None or last is None or last < first:
        return []
    counts = np.bincount(days[(days >= first) & (days <= last)] - first, minlength=last - first + 1)
    return [(epoch + dt.timedelta(days=first + i), int(n)) for i, n in enumerate(counts)]


def failing_days(
    table: pa.Table, ticks_per_second: int, failed: set[str], now: dt.datetime
) -> dict[dt.date, list[str]]:
    """The days holding a row that a failed check refused, with those checks' names: a time in the
    future (timestamps; times at or before 1970-01-01 fall on their own day), a null (nulls), an exact
    repeat (duplicate rows). The row count check fails the whole source, never a day."""
    if not ticks_per_second or table.num_rows == 0:
        return {}
    ticks = table.column("timestamp")
    refused: list[tuple[str, pa.ChunkedArray]] = []
    if "timestamps" in failed:
        limit = (int(now.timestamp()) + CLOCK_SKEW_S) * ticks_per_second
        refused.append(
            ("timestamps", ticks.filter(pc.or_(pc.greater(ticks, limit), pc.less_equal(ticks, 0))))
        )
    if "nulls" in failed:
        empty = [pc.is_null(table.column(name)) for name in COLUMNS if name != "timestamp"]
        empty += [
            pc.equal(table.column(name), "")
            for name in ("user", "item")
            if pa.types.is_string(table.column(name).type)
        ]
        any_empty = empty[0]
        for mask in empty[1:]:
            any_empty = pc.or_kleene(any_empty, mask)
        refused.append(("nulls", ticks.filter(pc.fill_null(any_empty, False))))
    if "duplicate rows" in failed:
        groups = table.group_by(list(COLUMNS)).aggregate([([], "count_all")])
        refused.append(
            ("duplicate rows", groups.filter(pc.greater(groups["count_all"], 1)).column("timestamp"))
        )
    out: dict[dt.date, list[str]] = {}
    for name, when in refused:
        for d in np.unique(_days(when.drop_null(), ticks_per_second)):
            out.setdefault(dt.date(1970, 1, 1) + dt.timedelta(days=int(d)), []).append(name)
    return dict(sorted(out.items()))
