"""Read the MovieLens formats (ml-100k's tab-separated `u.data`, ml-1m's `::`, ml-20m's CSV) and their
titles. Users' own logs are read by ncflow/data/log_files.py; both give a `RawLog`.

pyarrow parses the text (multi-threaded C++), so even ml-20m's 500 MB `ratings.csv` takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from configs import DatasetSpec
from ncflow.data.interactions import RawLog
from ncflow.errors import NcflowError, first_line


def find_file(root: Path, name: str) -> Path:
    """The file called `name` under `root` at any depth: archives nest differently (ml-20m/ratings.csv)."""
    root = Path(root)
    if root.is_file() and root.name == name:
        return root
    hits = sorted(root.rglob(name), key=lambda p: len(p.parts))
    if not hits:
        raise NcflowError(f"no {name} under {root}: is it the right dataset folder?")
    return hits[0]


def read_movielens(root: Path, spec: DatasetSpec) -> RawLog:
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
    return RawLog(table, ticks_per_second=1, name=str(path))  # MovieLens times are Unix seconds


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
