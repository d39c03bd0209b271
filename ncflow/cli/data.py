"""`ncflow data DATASET`: download (or read) and preprocess; the last line printed is the output folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ncflow.errors import NcflowError

DEFAULT_DATA_DIR = Path("data")
SOURCE_FLAGS = (
    "user_col",
    "item_col",
    "rating_col",
    "timestamp_col",
    "time_format",
    "title_col",
    "drop_null_ids",
    "min_rating",
    "connection",
    "since",
    "until",
    "window_days",
)


def run(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from configs import PreprocessConfig, validation_message
    from configs.source import SourceParams
    from ncflow.data.preprocess import preprocess, read_manifest
    from ncflow.data.row_filters import dropped_line
    from ncflow.data.sources import dataset_label, obtain_raw

    overrides = {"protocol": args.protocol, "seed": args.seed}
    if args.test_negatives is not None:
        overrides["test_negatives"] = args.test_negatives
    if args.distinct_negatives:
        overrides["distinct_negatives"] = True
    if args.validation:
        overrides["validation"] = True
    log = {name: getattr(args, name) for name in SOURCE_FLAGS if getattr(args, name) is not None}
    try:
        source = SourceParams(dataset=args.dataset, source=args.source, **log)
        config = PreprocessConfig(**overrides, **source.source_settings())
    except ValidationError as err:
        raise NcflowError(f"bad setting: {validation_message(err)}") from None

    start = time.perf_counter()
    raw = obtain_raw(args.dataset, Path(args.data_dir), args.source, source.columns(), source.connection)
    fetch_seconds = time.perf_counter() - start
    out = preprocess(dataset_label(args.dataset), raw, Path(args.data_dir), config, device=args.device)
    manifest = read_manifest(out)
    seconds = {"fetch": round(fetch_seconds, 3), **manifest.get("seconds", {})}
    print(f"dataset      {manifest['dataset']} ({manifest['protocol']}, {manifest['backend']})")
    for name, value in manifest["counts"].items():
        print(f"{name.replace('_', ' '):<16} {value:,}")
    rows = manifest.get("rows", {})
    if dropped := dropped_line(rows.get("dropped_null_ids", 0), rows.get("dropped_rated_below", 0)):
        print(f"dropped          {dropped}")
    if window := manifest.get("window", {}).get("description"):
        print(f"window           {window}")
    print("seconds      " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(out)


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="download (or read) and preprocess a dataset")
    data.add_argument(
        "dataset",
        help="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a CSV/Parquet file, folder or glob | pg:TABLE",
    )
    data.add_argument(
        "--source",
        help="a mirror URL, a local archive, or a folder holding the ratings file; pg: a SQL query",
    )
    data.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where raw and processed data live")
    data.add_argument("--protocol", default="ncf", choices=["ncf", "vaecf"])
    data.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="gpu: CuPy")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--test-negatives", type=int, help="per user (default 100)")
    data.add_argument("--distinct-negatives", action="store_true", help="no repeats, positive excluded")
    data.add_argument(
        "--validation", action="store_true", help="ncf: hold out each user's second-latest item as validation"
    )
    data.add_argument(
        "--user-col", help="your log's user id column (default 'user'); ids: integers or strings"
    )
    data.add_argument("--item-col", help="your log's item id column (default 'item')")
    data.add_argument("--rating-col", help="your log's rating column (optional)")
    data.add_argument("--timestamp-col", help="your log's time column (optional)")
    data.add_argument(
        "--time-format", help="the time column's strptime format when it is text: %%m/%%d/%%Y %%H:%%M (UTC)"
    )
    data.add_argument("--title-col", help="your log's item name column: recommendations show the names")
    data.add_argument(
        "--drop-null-ids",
        action="store_true",
        default=None,
        help="drop rows without a user or item id (counted) instead of refusing the log",
    )
    data.add_argument(
        "--min-rating",
        type=float,
        help="drop rows rated below this (counted): --rating-col Quantity --min-rating 1 drops returns",
    )
    data.add_argument(
        "--connection", help="pg: datasets: env:VARIABLE or secret:BLOCK holding the connection string"
    )
    data.add_argument("--since", help="only interactions from this date (YYYY-MM-DD, UTC)")
    data.add_argument("--until", help="only interactions before this date (YYYY-MM-DD, UTC)")
    data.add_argument(
        "--window-days",
        type=int,
        help="only the last N days: before --until, else up to the log's newest row (or today, if it reaches today)",
    )
    data.set_defaults(func=run)
