"""Read interactions from the MovieLens formats and from users' own files, into plain arrays.

Every reader returns the same thing, `Interactions`: original user and item ids (int64), ratings
(float32) and timestamps (int64). pyarrow parses the text (multi-threaded C++), so even ml-20m's
500 MB `ratings.csv` takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from configs import Columns, DatasetSpec
from ncflow.errors import NcflowError


@dataclass(frozen=True)
class Interactions:
    user: np.ndarray  # (N,) int64, original ids
    item: np.ndarray  # (N,) int64, original ids
    rating: np.ndarray  # (N,) float32; 1.0 where the source has no ratings
    timestamp: np.ndarray  # (N,) int64; the row number where the source has no times

    def __len__(self) -> int:
        return len(self.user)


def find_file(root: Path, name: str) -> Path:
    """The file called `name` under `root` at any depth: archives nest differently (ml-20m/ratings.csv)."""
    root = Path(root)
    if root.is_file() and root.name == name:
        return root
    hits = sorted(root.rglob(name), key=lambda p: len(p.parts))
    if not hits:
        raise NcflowError(f"no {name} under {root}: is it the right dataset folder?")
    return hits[0]


def read_movielens(root: Path, spec: DatasetSpec) -> Interactions:
    path = find_file(root, spec.ratings_file)
    names = ["user", "item", "rating", "timestamp"]
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float32(), "timestamp": pa.int64()}
    if spec.format == "ml-100k":
        read = pacsv.ReadOptions(column_names=names)
        parse = pacsv.ParseOptions(delimiter="\t")
        convert = pacsv.ConvertOptions(column_types=types)
    elif spec.format == "ml-1m":
        # "::" is two one-character delimiters with an empty field between: skip the empty ones.
        read = pacsv.ReadOptions(column_names=["user", "_1", "item", "_2", "rating", "_3", "timestamp"])
        parse = pacsv.ParseOptions(delimiter=":")
        convert = pacsv.ConvertOptions(column_types=types, include_columns=names)
    else:  # ml-csv: userId,movieId,rating,timestamp with a header
        read = pacsv.ReadOptions(column_names=names, skip_rows=1)
        parse = pacsv.ParseOptions(delimiter=",")
        convert = pacsv.ConvertOptions(column_types=types)
    try:
        table = pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise NcflowError(f"{path} is not a valid {spec.format} ratings file: {first_line(err)}") from None
    return to_interactions(table, path)


def read_interactions_file(path: Path, columns: Columns) -> Interactions:
    """A user's own CSV (with a header) or Parquet file; column names come from `columns`."""
    path = Path(path)
    if not path.is_file():
        raise NcflowError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise NcflowError(f"{path} is empty: it holds no interactions")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise NcflowError(f"cannot read {path}: {first_line(err)}") from None
    wanted = {
        "user": columns.user,
        "item": columns.item,
        "rating": columns.rating,
        "timestamp": columns.timestamp,
    }
    missing = [name for name in wanted.values() if name is not None and name not in table.column_names]
    if missing:
        found = ", ".join(table.column_names)
        raise NcflowError(
            f"{path} lacks column(s) {', '.join(missing)} (found: {found}); set the column names"
        )
    out = {}
    for role, name in wanted.items():
        if name is None:  # absent rating: implicit positive; absent time: file order is time order
            out[role] = pa.array(
                np.ones(table.num_rows, np.float32) if role == "rating" else np.arange(table.num_rows)
            )
        else:
            out[role] = numeric_column(table.column(name), name, path, integer=role != "rating")
    return to_interactions(pa.table(out), path)


def numeric_column(column: pa.ChunkedArray, name: str, path: Path, integer: bool) -> pa.ChunkedArray:
    target = pa.int64() if integer else pa.float32()
    try:
        return pc.cast(column, target)  # safe cast: "12.5" or "u7" as an id is refused, not truncated
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        sample = next((v for v in column.to_pylist() if not is_number(v, integer)), None)
        kind = "integers" if integer else "numbers"
        raise NcflowError(f"column {name!r} of {path} must hold {kind}; found {sample!r}") from None


def is_number(value: object, integer: bool) -> bool:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return number.is_integer() or not integer


def to_interactions(table: pa.Table, path: Path) -> Interactions:
    if table.num_rows == 0:
        raise NcflowError(f"{path} holds no interactions")
    if any(table.column(c).null_count for c in ("user", "item", "rating", "timestamp")):
        raise NcflowError(f"{path} has empty fields in its user, item, rating or timestamp columns")
    column = {name: table.column(name).to_numpy() for name in ("user", "item", "rating", "timestamp")}
    return Interactions(
        user=column["user"].astype(np.int64, copy=False),
        item=column["item"].astype(np.int64, copy=False),
        rating=column["rating"].astype(np.float32, copy=False),
        timestamp=column["timestamp"].astype(np.int64, copy=False),
    )


def read_titles(root: Path, spec: DatasetSpec) -> dict[int, str]:
    """Original item id -> title, for recommendations a person can read; empty if the file is absent."""
    if spec.items_file is None:
        return {}
    try:
        path = find_file(root, spec.items_file)
    except NcflowError:
        return {}
    titles: dict[int, str] = {}
    if spec.format == "ml-csv":
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(include_columns=["movieId", "title"])
        )
        return dict(zip(table.column("movieId").to_pylist(), table.column("title").to_pylist(), strict=True))
    separator = "|" if spec.format == "ml-100k" else "::"
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split(separator)
        if len(parts) >= 2 and parts[0].isdigit():
            titles[int(parts[0])] = parts[1]
    return titles


def first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
