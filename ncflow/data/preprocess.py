"""The preprocessing stage: raw ratings in, a processed dataset folder (Parquet + manifest.json) out.

The folder's name carries a hash of everything that shapes it (source checksum, config, code
version), so a second run with the same inputs finds it and does no work, and a changed setting can
never be mistaken for an old result. It is written to a temporary folder and renamed when complete.

    processed/<dataset>-<protocol>-<hash>/
      manifest.json      counts, source checksum, config, seconds per stage
      users.parquet      index -> original user id (int64 or string, as the source has it)   (ncf)
      items.parquet      index -> original item id, title
      train.parquet      user, item                            (ncf: sorted by user, item)
      test.parquet       user, item, negatives[K]              (ncf)
      valid.parquet      user, item, negatives[K]              (ncf with validation: users with >= 3 items)
      targets.parquet    user, items: list<int32>              (ncf, temporal holdout: every test target)
      <split>.parquet    user_id, items: list<int32> (a CSR row per user)   (vaecf)
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import ncflow
from configs import PreprocessConfig, dataset_registry
from ncflow.atomic import atomic_dir
from ncflow.data.download import file_md5
from ncflow.data.interactions import RawLog, original_ids, to_interactions
from ncflow.data.log_files import checksum, read_log
from ncflow.data.ncf_split import ncf_split
from ncflow.data.readers import find_file, read_movielens, read_titles
from ncflow.data.row_filters import select_rows
from ncflow.data.temporal_split import temporal_split, temporal_window
from ncflow.data.vae_split import SPLITS, vae_split
from ncflow.errors import NcflowError
from ncflow.locks import exclusive
from ncflow.xp import Device, get_xp, to_numpy

# Bump when the output of the same input and config changes: it is part of the cache key.
PREPROCESS_VERSION = 1


def is_movielens_folder(raw: Path) -> bool:
    """A folder in ml-20m's layout (a ratings.csv at any depth), as `ncflow synth` writes."""
    return Path(raw).is_dir() and next(Path(raw).rglob("ratings.csv"), None) is not None


def source_checksum(dataset: str, raw: Path) -> str:
    """md5 of what is read: the registry's ratings file inside `raw`, or the log's file(s)."""
    registry = dataset_registry()
    if dataset in registry:
        return file_md5(find_file(raw, registry[dataset].ratings_file))
    if is_movielens_folder(raw):
        return file_md5(find_file(raw, "ratings.csv"))
    return checksum(raw)


def read_raw(dataset: str, raw: Path, config: PreprocessConfig) -> tuple[RawLog, dict[Any, str]]:
    """The source's rows as read, and item titles where the source has them."""
    registry = dataset_registry()
    if dataset in registry:
        spec = registry[dataset]
    elif is_movielens_folder(raw):
        spec = registry["ml-20m"]  # same file format and layout
    else:
        log = read_log(raw, config.columns)
        return log, log_titles(log)
    return read_movielens(raw, spec), read_titles(raw, spec)


def log_titles(log: RawLog) -> dict[Any, str]:
    """Item id -> its most frequent title in a log with a title column (a shop's descriptions vary
    between rows: a typo, "damaged"); empty without one."""
    if "title" not in log.table.column_names:
        return {}
    pairs = log.table.select(["item", "title"]).filter(pc.is_valid(log.table.column("title")))
    counts = pairs.group_by(["item", "title"]).aggregate([([], "count_all")])
    counts = counts.sort_by([("item", "ascending"), ("count_all", "descending"), ("title", "ascending")])
    titles: dict[Any, str] = {}
    for item, title in zip(
        counts.column("item").to_pylist(), counts.column("title").to_pylist(), strict=True
    ):
        titles.setdefault(item, title)
    return titles


def output_dir(out_root: Path, dataset: str, source_md5: str, config: PreprocessConfig) -> Path:
    key = json.dumps([source_md5, config.model_dump(mode="json"), PREPROCESS_VERSION], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return Path(out_root) / "processed" / f"{dataset}-{config.protocol}-{digest}"


def preprocess(
    dataset: str, raw: Path, out_root: Path, config: PreprocessConfig | None = None, device: Device = "auto"
) -> Path:
    """Split `raw` (a dataset folder or an interactions file) by `config.protocol`; return the folder."""
    config = config or PreprocessConfig()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    source_md5 = source_checksum(dataset, raw)
    out = output_dir(out_root, dataset, source_md5, config)
    if (out / "manifest.json").is_file():
        return out  # complete: folders appear only by rename after a full write
    with exclusive(out):  # a concurrent run of the same inputs waits, then finds the folder written
        if (out / "manifest.json").is_file():
            return out
        seconds["checksum"] = time.perf_counter() - start
        _write_processed(dataset, raw, out, source_md5, config, device, seconds)
    return out


def _write_processed(
    dataset: str,
    raw: Path,
    out: Path,
    source_md5: str,
    config: PreprocessConfig,
    device: Device,
    seconds: dict[str, float],
) -> None:
    """Read, split and write `out` (atomically); the caller holds its lock."""

    start = time.perf_counter()
    raw_log, titles = read_raw(dataset, raw, config)
    selected = select_rows(raw_log, config)  # drops (null ids, low ratings) and the time window
    interactions = to_interactions(selected.raw)
    seconds["read"] = time.perf_counter() - start

    start = time.perf_counter()
    extra: dict[str, Any] = {}  # what a protocol adds to the manifest (temporal: its cutoff and window)
    xp = get_xp(device)
    user, item = xp.asarray(interactions.user), xp.asarray(interactions.item)
    if config.protocol == "ncf":
        options = {
            "negatives": config.test_negatives, "distinct": config.distinct_negatives, "seed": config.seed,
            "validation": config.validation,
        }  # fmt: skip
        timestamp = xp.asarray(interactions.timestamp)
        if config.holdout == "temporal":
            window = temporal_window(interactions, config)
            split = temporal_split(
                xp, user, item, timestamp, **window.ticks(interactions.ticks_per_second), **options
            )
            extra["temporal"] = window.describe()
        else:
            split = ncf_split(xp, user, item, timestamp, **options)
        tables = ncf_tables(split, interactions.user_dictionary)
        counts = {
            "users": split.n_users,
            "items": split.n_items,
            "train_positives": len(split.train_user),
            "test_users": split.n_users if split.test_user is None else len(split.test_user),
            "test_negatives": config.test_negatives,
        }
        if split.valid_user is not None:
            counts["valid_users"] = len(split.valid_user)
        counts |= split.cold or {}
        item_codes = split.item_ids
    else:
        vsplit = vae_split(
            xp, user, item, xp.asarray(interactions.rating),
            min_rating=config.min_rating, min_user_items=config.min_user_items,
            heldout_users=config.heldout_users, heldout_fraction_cap=config.heldout_fraction_cap,
            foldin_fraction=config.foldin_fraction, seed=config.seed,
        )  # fmt: skip
        tables = {name: csr_table(vsplit.parts[name], interactions.user_dictionary) for name in SPLITS}
        counts = {
            "items": vsplit.n_items,
            "train_users": len(vsplit.parts["train"].row_ids),
            "train_positives": len(vsplit.parts["train"].indices),
            "valid_users": len(vsplit.parts["valid_foldin"].row_ids),
            "test_users": len(vsplit.parts["test_foldin"].row_ids),
        }
        item_codes = vsplit.item_ids
    item_ids = original_ids(to_numpy(item_codes), interactions.item_dictionary)
    tables["items"] = pa.table(
        {
            "index": pa.array(np.arange(len(item_ids), dtype=np.int32)),
            "id": item_ids,
            "title": pa.array([titles.get(i) for i in item_ids.to_pylist()], pa.string()),
        }
    )
    seconds["split"] = time.perf_counter() - start

    start = time.perf_counter()
    manifest: dict[str, Any] = {
        "dataset": dataset,
        "protocol": config.protocol,
        "counts": counts,
        "source": {"path": str(Path(raw).resolve()), "md5": source_md5, "rows": len(raw_log)},
        "rows": {
            "dropped_null_ids": selected.null_ids,
            "dropped_rated_below": selected.rated_below,
            "kept": len(selected.raw),
        },
        "window": {
            "since": selected.window.since and str(selected.window.since),
            "until": selected.window.until and str(selected.window.until),
            "description": selected.window.description,
        },
        "config": config.model_dump(mode="json"),
        "ncflow_version": ncflow.__version__,
        "preprocess_version": PREPROCESS_VERSION,
        "backend": xp.__name__,
        **extra,
    }
    with atomic_dir(out) as tmp:
        for name, table in tables.items():
            pq.write_table(table, tmp / f"{name}.parquet")
        seconds["write"] = time.perf_counter() - start
        manifest["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def ncf_tables(split, user_dictionary: pa.Array | None = None) -> dict[str, pa.Table]:
    n_users = split.n_users
    user_ids = original_ids(to_numpy(split.user_ids), user_dictionary)
    test_users = np.arange(n_users, dtype=np.int32) if split.test_user is None else to_numpy(split.test_user)
    tables = {
        "users": pa.table({"index": np.arange(n_users, dtype=np.int32), "id": user_ids}),
        "train": pa.table({"user": to_numpy(split.train_user), "item": to_numpy(split.train_item)}),
        "test": heldout_table(test_users, split.test_item, split.test_negatives),
    }
    if split.targets is not None:  # every target of each test user (temporal): full-ranking metrics
        indptr, items = (to_numpy(a) for a in split.targets)
        targets = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(items))
        tables["targets"] = pa.table({"user": test_users.astype(np.int32), "items": targets})
    if split.valid_user is not None:
        tables["valid"] = heldout_table(split.valid_user, split.valid_item, split.valid_negatives)
    return tables


def heldout_table(users, items, negatives) -> pa.Table:
    """One held-out positive per row with its K sampled negatives (test.parquet, valid.parquet)."""
    negatives = to_numpy(negatives)
    k = negatives.shape[1]
    return pa.table(
        {
            "user": to_numpy(users).astype(np.int32),
            "item": to_numpy(items),
            "negatives": pa.FixedSizeListArray.from_arrays(pa.array(negatives.reshape(-1)), k),
        }
    )


def csr_table(part, user_dictionary: pa.Array | None = None) -> pa.Table:
    offsets = pa.array(to_numpy(part.indptr).astype(np.int32))
    return pa.table(
        {
            "user_id": original_ids(to_numpy(part.row_ids), user_dictionary),
            "items": pa.ListArray.from_arrays(offsets, pa.array(to_numpy(part.indices))),
        }
    )


def read_manifest(processed: Path) -> dict[str, Any]:
    path = Path(processed) / "manifest.json"
    if not path.is_file():
        raise NcflowError(
            f"{processed} is not a processed dataset (no manifest.json): run `ncflow data` first"
        )
    return json.loads(path.read_text())
