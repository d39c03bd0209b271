"""Reading the Parquet files of a processed dataset or bundle, fast to start."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file. Not pq.read_table: that imports pyarrow.dataset, which imports pandas where it
    is installed: 1.9 s of a trainer's start-up on the GPU image, for nothing."""
    with pq.ParquetFile(path) as file:
        return file.read(columns=columns)
