"""`ncflow data DATASET`: download (or read) and preprocess; the last line printed is the output folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ncflow.errors import NcflowError

DEFAULT_DATA_DIR = Path("data")


def run(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from configs import PreprocessConfig, validation_message
    from ncflow.data.preprocess import preprocess, read_manifest
    from ncflow.data.sources import dataset_label, obtain_raw

    overrides = {"protocol": args.protocol, "seed": args.seed}
    if args.test_negatives is not None:
        overrides["test_negatives"] = args.test_negatives
    if args.distinct_negatives:
        overrides["distinct_negatives"] = True
    if args.validation:
        overrides["validation"] = True
    columns = {k: v for k, v in (("user", args.user_col), ("item", args.item_col)) if v}
    columns |= {k: v for k, v in (("rating", args.rating_col), ("timestamp", args.timestamp_col)) if v}
    if columns:
        overrides["columns"] = columns
    try:
        config = PreprocessConfig(**overrides)
    except ValidationError as err:
        raise NcflowError(f"bad preprocessing setting: {validation_message(err)}") from None

    start = time.perf_counter()
    raw = obtain_raw(args.dataset, Path(args.data_dir), args.source)
    fetch_seconds = time.perf_counter() - start
    out = preprocess(dataset_label(args.dataset), raw, Path(args.data_dir), config, device=args.device)
    manifest = read_manifest(out)
    seconds = {"fetch": round(fetch_seconds, 3), **manifest.get("seconds", {})}
    print(f"dataset      {manifest['dataset']} ({manifest['protocol']}, {manifest['backend']})")
    for name, value in manifest["counts"].items():
        print(f"{name.replace('_', ' '):<16} {value:,}")
    print("seconds      " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(out)


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="download (or read) and preprocess a dataset")
    data.add_argument(
        "dataset", help="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a CSV/Parquet file"
    )
    data.add_argument("--source", help="a mirror URL, a local archive, or a folder holding the ratings file")
    data.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where raw and processed data live")
    data.add_argument("--protocol", default="ncf", choices=["ncf", "vaecf"])
    data.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="gpu: CuPy")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--test-negatives", type=int, help="per user (default 100)")
    data.add_argument("--distinct-negatives", action="store_true", help="no repeats, positive excluded")
    data.add_argument(
        "--validation", action="store_true", help="ncf: hold out each user's second-latest item as validation"
    )
    data.add_argument("--user-col", help="user column of a local file (default 'user')")
    data.add_argument("--item-col", help="item column of a local file (default 'item')")
    data.add_argument("--rating-col", help="rating column of a local file (optional)")
    data.add_argument("--timestamp-col", help="timestamp column of a local file (optional)")
    data.set_defaults(func=run)
