"""Which rows of a log a run trains on: rows without a user or item id (`drop_null_ids`), rows rated below
`drop_rating_below` (a shop's returns, as negative quantities), then the time window. The data checks
(ncflow/data/validate.py) report what was dropped; preprocessing (ncflow/data/preprocess.py) splits
what is left; both call `select_rows`, so the two agree.

The window's end, for `window_days` without `until`, is the log's own: a log that ends in the past (an
export, a public dataset) counts back from its newest row, one that reaches today counts back from
today. Either way it depends on the data alone, so unchanged data keeps its window (and its fingerprint
still means "nothing changed"), and the description says which end was taken.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from configs import PreprocessConfig
from ncflow.data.interactions import RawLog, in_window, null_count
from ncflow.errors import NcflowError


@dataclass(frozen=True)
class Window:
    since: dt.date | None  # [since, until), 00:00 UTC; None: open
    until: dt.date | None
    description: str  # "last 90 days of the log, ending 2011-12-09 (the newest row)"; "" without a window


@dataclass(frozen=True)
class Selection:
    raw: RawLog  # the rows kept
    null_ids: int  # rows dropped for a missing user or item id
    rated_below: int  # rows dropped for a rating below the floor
    window: Window


def dropped_line(null_ids: int, rated_below: int) -> str:
    """The drops in one line, naming the flag behind each ("" when nothing was dropped)."""
    parts = [
        f"{null_ids:,} rows without a user or item id (--drop-null-ids)" if null_ids else "",
        f"{rated_below:,} rows rated below the minimum (--min-rating)" if rated_below else "",
    ]
    return ", ".join(p for p in parts if p)


def drop_rows(raw: RawLog, config: PreprocessConfig) -> tuple[RawLog, int, int]:
    """(the rows kept, rows without an id dropped, rows rated below the floor dropped)."""
    table, null_ids, rated_below = raw.table, 0, 0
    if config.drop_null_ids and (null_count(table.column("user")) or null_count(table.column("item"))):
        keep = pc.and_(has_value(table.column("user")), has_value(table.column("item")))
        kept = table.filter(keep)
        null_ids, table = table.num_rows - kept.num_rows, kept
    if config.drop_rating_below is not None:
        kept = table.filter(
            pc.fill_null(pc.greater_equal(table.column("rating"), config.drop_rating_below), True)
        )
        rated_below, table = table.num_rows - kept.num_rows, kept  # a null rating is the nulls check's
    if table.num_rows == 0:
        raise NcflowError(
            f"{raw.name}: every row was dropped ({null_ids:,} without an id, {rated_below:,} rated below the minimum)"
        )
    return RawLog(table, raw.ticks_per_second, raw.name), null_ids, rated_below


def has_value(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where an id is present: not null, and for string ids not empty (a CSV's empty field)."""
    valid = pc.is_valid(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        valid = pc.and_(valid, pc.fill_null(pc.not_equal(column, ""), False))
    return valid


def log_window(raw: RawLog, config: PreprocessConfig, today: dt.date | None = None) -> Window:
    """The run's time window on `raw`: `since`/`until` as given, or `window_days` back from the log's end."""
    if config.window_days is None:
        since, until = config.since, config.until
        if since is None and until is None:
            return Window(None, None, "")
        parts = [f"from {since}" if since else "", f"before {until}" if until else ""]
        described = " ".join(p for p in parts if p)
        return Window(config.since, config.until, described)
    if not raw.ticks_per_second:
        raise NcflowError(
            f"{raw.name} has no timestamp column: a time window (since/until/window_days) needs one "
            "(set the timestamp column's name)"
        )
    today = today or dt.datetime.now(dt.UTC).date()
    newest = newest_day(raw)
    days = config.window_days
    if newest < today:
        end, described = newest, f"last {days} days of the log, ending {newest} (the newest row)"
    else:
        end, described = today, f"last {days} days, ending today ({today})"
    return Window(end + dt.timedelta(days=1 - days), None, described)


def newest_day(raw: RawLog) -> dt.date:
    ticks = pc.max(raw.table.column("timestamp")).as_py()
    return dt.datetime.fromtimestamp(ticks // raw.ticks_per_second, dt.UTC).date()


def windowed(raw: RawLog, config: PreprocessConfig, today: dt.date | None = None) -> tuple[RawLog, Window]:
    """The rows of `raw` in the run's time window; NcflowError when none are."""
    window = log_window(raw, config, today)
    if window.since is None and window.until is None:
        return raw, window
    table = in_window(raw.table, raw, window.since, window.until)
    return RawLog(table, raw.ticks_per_second, raw.name), window


def select_rows(raw: RawLog, config: PreprocessConfig, today: dt.date | None = None) -> Selection:
    """The rows a run of `config` trains on; NcflowError when none are left."""
    kept, null_ids, rated_below = drop_rows(raw, config)
    kept, window = windowed(kept, config, today)
    return Selection(kept, null_ids, rated_below, window)
