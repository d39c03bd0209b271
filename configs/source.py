"""Where a training run's interactions come from and which of them it reads: the dataset, the column
names of a user's own log, the PostgreSQL connection's whereabouts, the time window and the data checks'
limits. Shared by every training flow's parameters (configs.train.TrainParams) and by `ncflow data`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from configs import Columns, Strict
from ncflow.data import postgres
from ncflow.data.checks import CheckLimits


class SourceParams(Strict):
    dataset: str = Field(
        description="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a CSV/Parquet file, folder or glob | pg:TABLE"
    )
    source: str | None = Field(
        default=None, description="a mirror URL, a local archive or a folder; for pg: datasets, a SQL query"
    )
    # A user's own log: its column names (MovieLens and synthetic datasets have fixed ones)
    user_col: str | None = Field(default=None, description="your log's user id column (default 'user')")
    item_col: str | None = Field(default=None, description="your log's item id column (default 'item')")
    rating_col: str | None = Field(
        default=None, description="your log's rating column (default: none, all 1)"
    )
    timestamp_col: str | None = Field(
        default=None, description="your log's time column (default: none, row order is time order)"
    )
    time_format: str | None = Field(
        default=None,
        description="the time column's strptime format when it is text, e.g. %m/%d/%Y %H:%M (UTC)",
    )
    title_col: str | None = Field(
        default=None, description="your log's item name column: recommendations show the names"
    )
    # Rows a run leaves out, counted in the data report (ncflow/data/row_filters.py)
    drop_null_ids: bool = Field(
        default=False, description="drop rows without a user or item id (else they fail the data checks)"
    )
    min_rating: float | None = Field(
        default=None,
        description="drop rows whose rating is below this: --rating-col Quantity --min-rating 1 drops returns",
    )
    connection: str = Field(
        default=postgres.DEFAULT_CONNECTION,
        description="pg: datasets: where the connection string is, env:VARIABLE or secret:BLOCK (never the string)",
    )
    # The time window [since, until), 00:00 UTC
    since: dt.date | None = Field(
        default=None, description="train on interactions from this date (YYYY-MM-DD)"
    )
    until: dt.date | None = Field(
        default=None, description="and before this date: a backfill as of that day (YYYY-MM-DD)"
    )
    window_days: int | None = Field(
        default=None,
        ge=1,
        description="train on the last N days: before until, else up to the log's newest row (or today)",
    )
    # Data checks before training (ncflow/data/checks.py)
    max_row_drop: float = Field(
        default=0.3, ge=0, le=1, description="refuse to train when the rows drop by more than this share"
    )
    max_duplicate_share: float = Field(
        default=0.1, ge=0, le=1, description="refuse to train when more than this share of rows are repeats"
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        from ncflow.data.log_files import is_pattern, log_files
        from ncflow.data.sources import is_named, known_datasets, unknown_dataset

        if value in known_datasets() or (not is_named(value) and Path(value).exists()):
            return value
        elif postgres.is_postgres(value):
            postgres.table_name(value)  # its NcflowError names the problem
            return value
        elif is_pattern(value):
            log_files(value)
            return value
        raise unknown_dataset(value)  # an NcflowError: the message stands alone, without pydantic's framing

    @field_validator("connection")
    @classmethod
    def _reference_only(cls, value: str) -> str:
        return postgres.check_connection(value)

    @model_validator(mode="after")
    def _consistent(self) -> SourceParams:
        from ncflow.data.sources import is_named

        mapped = [
            name
            for name in ("user_col", "item_col", "rating_col", "timestamp_col", "title_col", "time_format")
            if getattr(self, name)
        ]
        if mapped and is_named(self.dataset):
            raise ValueError(
                f"{', '.join(mapped)}: {self.dataset}'s columns are fixed; column names are for your own logs"
            )
        if self.since is not None and self.window_days is not None:
            raise ValueError("give since or window_days, not both")
        if self.time_format is not None and self.timestamp_col is None:
            raise ValueError("time_format reads the time column: name it too (timestamp_col)")
        if self.min_rating is not None and self.rating_col is None and not is_named(self.dataset):
            raise ValueError("min_rating filters on the rating column: name it too (rating_col)")
        start = self.window_start()
        if start is not None and self.until is not None and start >= self.until:
            raise ValueError(f"since ({start}) must be before until ({self.until})")
        return self

    def columns(self) -> Columns:
        return Columns(
            user=self.user_col or "user",
            item=self.item_col or "item",
            rating=self.rating_col,
            timestamp=self.timestamp_col,
            title=self.title_col,
            time_format=self.time_format,
        )

    def window_start(self) -> dt.date | None:
        """`since`, or `window_days` before `until`; None when the window counts back from the log's end
        (resolved against the data: ncflow/data/row_filters.py)."""
        if self.window_days is None or self.until is None:
            return self.since
        return self.until - dt.timedelta(days=self.window_days)

    def check_limits(self) -> CheckLimits:
        return CheckLimits(max_row_drop=self.max_row_drop, max_duplicate_share=self.max_duplicate_share)

    def source_settings(self) -> dict:
        """What the split's config takes from here: the columns, the rows dropped and the window."""
        from ncflow.data.sources import is_named

        settings = {
            "columns": self.columns(),
            "drop_null_ids": self.drop_null_ids,
            "drop_rating_below": self.min_rating,
            "since": self.window_start(),
            "until": self.until,
            "window_days": self.window_days if self.until is None else None,
        }
        if not is_named(self.dataset):
            # VAE-CF's ratings >= 4 are MovieLens stars: an own log's rating column (a quantity, say) is
            # only the --min-rating filter, and every kept row is a positive, as NCF and EASE take them
            settings["min_rating"] = None
        return settings
