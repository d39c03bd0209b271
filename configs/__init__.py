"""Validated configuration: the dataset registry and preprocessing settings.

YAML files in this folder hold the defaults; pydantic models refuse unknown keys and wrong types.
The trainer does not import this module (it runs where pydantic may be missing); it has its own
frozen dataclass config in `models/<name>/`.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ncflow.errors import NcflowError

CONFIG_DIR = Path(__file__).resolve().parent


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(Strict):
    url: str
    md5: str = Field(pattern=r"^[0-9a-f]{32}$")
    format: Literal["ml-100k", "ml-1m", "ml-csv"]
    ratings_file: str  # its name inside the archive, found at any depth
    items_file: str | None = None  # titles, for recommendations people can read


class Columns(Strict):
    """Column names of a user's own log (CSV with a header, Parquet, a PostgreSQL table or query), and
    how to read its times."""

    user: str = "user"
    item: str = "item"
    rating: str | None = None  # optional: absent means every row is a positive with rating 1
    timestamp: str | None = None  # optional: absent means file order is time order
    title: str | None = None  # optional: item names, kept beside the item ids for recommendations
    time_format: str | None = None  # strptime format of a text time column ("%m/%d/%Y %H:%M"); UTC


class PreprocessConfig(Strict):
    """Everything that changes the processed output; it is hashed into the output's name and cache key."""

    protocol: Literal["ncf", "vaecf"] = "ncf"
    seed: int = 0
    # NCF (ANCHORS.md section 1)
    test_negatives: int = Field(default=100, ge=1)  # per user, as in the NCF paper and MLPerf
    distinct_negatives: bool = False  # False: with replacement, duplicates masked at scoring (MLPerf)
    validation: bool = False  # hold out each user's second-latest item too: selection without test
    # latest: each user's latest item is test (NVIDIA's protocol). temporal: train before `cutoff`, test on
    # [cutoff, cutoff + horizon_days), as a retrained model is judged in production (temporal_split.py)
    holdout: Literal["latest", "temporal"] = "latest"
    cutoff: dt.date | None = None  # temporal: None means the last horizon_days of the data are the test
    horizon_days: int = Field(default=7, ge=1)
    # VAE-CF (ANCHORS.md section 2)
    # VAE-CF's strong positives: NVIDIA keeps MovieLens ratings >= 4 (the paper > 3.5, the same there).
    # None keeps every row: an own log's rating column may be a quantity (configs/source.py sets None).
    min_rating: float | None = 4.0
    min_user_items: int = Field(default=5, ge=2)
    heldout_users: int = Field(
        default=10_000, ge=1
    )  # each for validation and test; scaled down on small data
    heldout_fraction_cap: float = Field(default=0.1, gt=0, lt=0.5)  # at most this share of users each
    foldin_fraction: float = Field(default=0.8, gt=0, lt=1)
    columns: Columns = Columns()
    # Rows dropped before the window and the split, counted in the data report (ncflow/data/row_filters.py)
    drop_null_ids: bool = False  # rows without a user or an item id (else they fail the nulls check)
    drop_rating_below: float | None = None  # rows rated below this, every protocol (returns: 1 on a quantity)
    # The time window [since, until), 00:00 UTC: retraining on the latest weeks, or backfilling a past date
    since: dt.date | None = None
    until: dt.date | None = None
    # The last N days of the log, counted back from its newest row (from today when the log reaches
    # today): resolved against the data where it is read, so unchanged data keeps its window
    window_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _window_in_order(self) -> PreprocessConfig:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")
        if self.window_days is not None and (self.since is not None or self.until is not None):
            raise ValueError("window_days counts back from the log's end: give it without since and until")
        return self


@cache
def dataset_registry() -> dict[str, DatasetSpec]:
    raw = yaml.safe_load((CONFIG_DIR / "datasets.yaml").read_text())
    return {name: DatasetSpec(**spec) for name, spec in raw.items()}


def dataset_spec(name: str) -> DatasetSpec:
    registry = dataset_registry()
    if name not in registry:
        known = ", ".join(sorted(registry))
        raise NcflowError(f"unknown dataset {name!r}: known are {known}, or a path to a CSV/Parquet file")
    return registry[name]


def validation_message(err: ValidationError) -> str:
    """pydantic's report folded into one line, naming each bad field."""
    parts = []
    for e in err.errors():
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(str(p) for p in e['loc'])}: {message}" if e["loc"] else message)
    return "; ".join(parts)
