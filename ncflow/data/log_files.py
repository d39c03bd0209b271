"""Users' own interaction logs on disk: one CSV or Parquet file, a folder of them (hive partitions such as
`date=2026-12-01/part-0.parquet` included), or a glob. One reader, pyarrow.dataset, for all of them.

The columns are named by `configs.Columns` and come out as a `RawLog` in ncflow's types:
- ids: integers stay int64; strings (SKUs, UUIDs as text) stay strings; a PostgreSQL `uuid` becomes
  its text form; whole-valued floats become int64; anything else is refused by name;
- rating: any number, as float32 (absent: every row is a positive, rating 1);
- timestamp: an Arrow timestamp or date (Parquet, PostgreSQL, ISO text in a CSV), text in the
  `time_format` given (strptime's: `%m/%d/%Y %H:%M`, read as UTC), or an integer read as Unix seconds,
  milliseconds, microseconds or nanoseconds by its magnitude (absent: row order is time order, and no
  time window applies);
- title: an item's name, as text (optional), kept beside the item ids for recommendations.
"""

from __future__ import annotations

import glob
import hashlib
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from configs import Columns
from ncflow.data.download import file_md5
from ncflow.data.interactions import RawLog
from ncflow.errors import NcflowError, first_line

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
TICKS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
# An integer timestamp's unit, by the magnitude of its largest value: 1e11 s is the year 5138.
MAGNITUDES = ((10**11, 1), (10**14, 1_000), (10**17, 1_000_000))


def is_pattern(text: str) -> bool:
    return glob.has_magic(text)


def log_files(path: str | Path) -> list[Path]:
    """The data files of a log: the file itself, every CSV/Parquet file under a folder, or a glob's matches."""
    text = str(path)
    if is_pattern(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise NcflowError(f"no files match {text}")
    elif Path(text).is_dir():
        files = sorted(
            p
            for p in Path(text).rglob("*")
            if p.is_file()
            and p.suffix.lower() in FORMATS
            and not any(part.startswith((".", "_")) for part in p.relative_to(text).parts)
        )
        if not files:
            raise NcflowError(f"no Parquet or CSV files under {text}")
    elif Path(text).is_file():
        files = [Path(text)]
    else:
        raise NcflowError(f"no such file or folder: {text}")
    return files


def log_format(files: list[Path]) -> str:
    formats = {FORMATS.get(p.suffix.lower(), "csv") for p in files}  # a file of another name: CSV text
    if len(formats) > 1:
        raise NcflowError(f"{files[0].parent} mixes CSV and Parquet files: keep one format per log")
    return formats.pop()


def checksum(path: str | Path) -> str:
    """md5 of the log's bytes: of the file, or of every file's (relative name, md5) in name order."""
    files = log_files(path)
    if len(files) == 1 and Path(path).is_file():
        return file_md5(files[0])
    root = partition_root(path)
    digest = hashlib.md5()
    for file in files:
        digest.update(f"{file.relative_to(root) if root else file}\0{file_md5(file)}\n".encode())
    return digest.hexdigest()


def partition_root(path: str | Path) -> Path | None:
    """The folder hive partitions are named under: the folder itself, or a glob's fixed prefix."""
    text = str(path)
    if is_pattern(text):
        fixed = Path(text.split("*")[0].split("?")[0].split("[")[0])
        return fixed if str(fixed).endswith("/") or fixed.is_dir() else fixed.parent
    return Path(text) if Path(text).is_dir() else None


def read_log(path: str | Path, columns: Columns) -> RawLog:
    """The mapped columns of a log file, folder or glob, in ncflow's types (nulls kept)."""
    files = log_files(path)
    if len(files) == 1 and files[0].stat().st_size == 0:
        raise NcflowError(f"{files[0]} is empty: it holds no interactions")
    try:
        try:
            table = _read_table(path, files, columns)
        except pa.ArrowInvalid as err:
            if log_format(files) != "csv" or "conversion error" not in str(err).lower():
                raise
            # CSV types are guessed from the first block: ids that look like integers there (stock code
            # 22423) and not later (85123A) fail to convert. Ids are labels: read them as text.
            table = _read_table(path, files, columns, text_ids=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise NcflowError(f"cannot read {path}: {first_line(err)}") from None
    return canonical(table, columns, str(path))


def _read_table(path: str | Path, files: list[Path], columns: Columns, text_ids: bool = False) -> pa.Table:
    root = partition_root(path)
    fmt: str | ds.FileFormat = log_format(files)
    if text_ids:
        ids = {c: pa.string() for c in (columns.user, columns.item, columns.title) if c}
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=ids))
    dataset = ds.dataset(
        [str(f) for f in files],
        format=fmt,
        partitioning="hive" if root else None,
        partition_base_dir=str(root) if root else None,
    )
    check_columns(dataset.schema.names, columns, str(path))
    return dataset.to_table(columns=[c for c in mapped(columns).values() if c is not None])


def mapped(columns: Columns) -> dict[str, str | None]:
    return {
        "user": columns.user,
        "item": columns.item,
        "rating": columns.rating,
        "timestamp": columns.timestamp,
        "title": columns.title,
    }


def check_columns(found: list[str], columns: Columns, name: str) -> None:
    missing = [c for c in mapped(columns).values() if c is not None and c not in found]
    if missing:
        raise NcflowError(
            f"{name} lacks column(s) {', '.join(missing)} (found: {', '.join(found)}); set the column "
            "names (--user-col, --item-col, --rating-col, --timestamp-col, --title-col)"
        )


def canonical(table: pa.Table, columns: Columns, name: str) -> RawLog:
    """user, item, rating, timestamp in ncflow's types, from a table holding the mapped columns."""
    check_columns(table.column_names, columns, name)
    n = table.num_rows
    if n == 0:
        raise NcflowError(f"{name} holds no interactions")
    names = mapped(columns)
    out = {
        "user": id_column(table.column(names["user"]), names["user"], name),
        "item": id_column(table.column(names["item"]), names["item"], name),
        "rating": rating_column(table, names["rating"], name),
    }
    if names["timestamp"] is None:  # file order is time order
        out["timestamp"], ticks = pa.chunked_array([pa.array(np.arange(n, dtype=np.int64))]), 0
    else:
        column = table.column(names["timestamp"])
        out["timestamp"], ticks = time_column(column, names["timestamp"], name, columns.time_format)
    if names["title"] is not None:
        out["title"] = table.column(names["title"]).cast(pa.string())
    return RawLog(pa.table(out), ticks, name)


def id_column(column: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        return id_column(column.cast(kind.value_type), name, source)
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if isinstance(kind, pa.BaseExtensionType) or (
        pa.types.is_fixed_size_binary(kind) and kind.byte_width == 16
    ):
        return uuid_text(column, name, source)
    if pa.types.is_floating(kind):
        try:
            return column.cast(pa.int64())  # safe: 12.5 is refused, not truncated
        except pa.ArrowInvalid:
            sample = pc.min_max(column)["max"].as_py()
            raise NcflowError(
                f"column {name!r} of {source} holds numbers that are not whole ({sample}): ids must be "
                "integers or strings"
            ) from None
    raise NcflowError(f"column {name!r} of {source} has type {kind}: ids must be integers or strings")


def uuid_text(column: pa.ChunkedArray, name: str, source: str) -> pa.ChunkedArray:
    """UUIDs as their text form; the distinct values are converted, then taken back (no loop per row)."""
    if isinstance(column.type, pa.BaseExtensionType):  # arrow.uuid: 16 bytes underneath
        column = pa.chunked_array([chunk.storage for chunk in column.chunks], column.type.storage_type)
    storage = column
    if not (pa.types.is_fixed_size_binary(storage.type) and storage.type.byte_width == 16):
        raise NcflowError(
            f"column {name!r} of {source} has type {column.type}: ids must be integers or strings"
        )
    distinct = pc.unique(storage)
    text = pa.array(
        [None if b is None else str(uuid.UUID(bytes=b)) for b in distinct.to_pylist()], pa.string()
    )
    return pa.chunked_array([text.take(pc.index_in(storage, value_set=distinct))])


def rating_column(table: pa.Table, name: str | None, source: str) -> pa.ChunkedArray:
    if name is None:  # implicit feedback: every row is a positive
        return pa.chunked_array([pa.array(np.ones(table.num_rows, np.float32))])
    try:
        return table.column(name).cast(pa.float32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise NcflowError(f"column {name!r} of {source} must hold numbers (ratings)") from None


def time_column(
    column: pa.ChunkedArray, name: str, source: str, time_format: str | None = None
) -> tuple[pa.ChunkedArray, int]:
    """(int64 ticks, ticks per second) of a timestamp column; text in `time_format` if one is given."""
    kind = column.type
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and time_format is not None:
        column, kind = formatted_times(column, name, source, time_format), pa.timestamp("s")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            column = column.cast(pa.timestamp("us", "UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            sample = next((v for v in column.to_pylist()[:1000] if v), None)
            raise NcflowError(
                f"column {name!r} of {source} must hold times (Unix seconds or ISO 8601); found {sample!r}: "
                "give its format with --time-format (e.g. %m/%d/%Y %H:%M)"
            ) from None
        kind = column.type
    if pa.types.is_timestamp(kind):
        return column.cast(pa.int64()), TICKS[kind.unit]
    if pa.types.is_date32(kind):
        return pc.multiply(column.cast(pa.int32()).cast(pa.int64()), 86_400), 1
    if pa.types.is_date64(kind):
        return column.cast(pa.int64()), 1_000
    if pa.types.is_integer(kind):
        top = pc.max(pc.abs(column.cast(pa.int64()))).as_py() or 0
        ticks = next((t for limit, t in MAGNITUDES if top < limit), 1_000_000_000)
        return column.cast(pa.int64()), ticks
    if pa.types.is_floating(kind):
        try:
            return time_column(column.cast(pa.int64()), name, source)
        except pa.ArrowInvalid:
            pass
    raise NcflowError(f"column {name!r} of {source} has type {kind}: timestamps must be times or integers")


def formatted_times(column: pa.ChunkedArray, name: str, source: str, time_format: str) -> pa.ChunkedArray:
    """Text times parsed with strptime's `time_format`, as UTC seconds; empty fields stay null (the nulls
    check counts them); a value that does not parse is refused, with an example."""
    text = pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)
    try:
        parsed = pc.strptime(text, format=time_format, unit="s", error_is_null=True)
    except pa.ArrowInvalid as err:  # a format arrow cannot use at all
        raise NcflowError(f"--time-format {time_format!r}: {first_line(err)}") from None
    bad = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    if pc.any(bad).as_py():
        example = text.filter(bad)[0].as_py()
        count = pc.sum(bad).as_py()
        raise NcflowError(
            f"column {name!r} of {source}: {example!r} does not match --time-format {time_format!r} "
            f"({count:,} such values)"
        )
    return parsed
