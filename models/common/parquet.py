"""Reading the Parquet files of a processed dataset or bundle, fast to start.

Why not pyarrow's own conveniences: on an image where pandas is installed, pq.read_table imports it
(through pyarrow.dataset) and so does Array.to_numpy (pyarrow 25): 0.4-1.9 s of a trainer's start-up,
for nothing. ParquetFile and the buffers of a primitive array need neither.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file."""
    with pq.ParquetFile(path) as file:
        return file.read(columns=columns)


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A NumPy view of a primitive column without nulls (one copy when it has several chunks)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    kind = (
        "i"
        if pa.types.is_signed_integer(values.type)
        else "u"
        if pa.types.is_unsigned_integer(values.type)
        else "f"
    )
    if values.null_count or not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return values.to_numpy(zero_copy_only=False)  # not the trainers' columns: the general path
    dtype = np.dtype(f"{kind}{values.type.bit_width // 8}")
    return np.frombuffer(
        values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
    )
