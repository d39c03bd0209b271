"""The trainers' pandas-free Parquet column reader gives the same arrays as pyarrow's own conversion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.common.parquet import read_table, to_numpy


def test_columns_match_pyarrow_for_chunked_sliced_and_list_columns(tmp_path) -> None:
    users = np.arange(1000, dtype=np.int32)
    negatives = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(3000, dtype=np.int32)), 3)
    pq.write_table(
        pa.table({"user": users, "negatives": negatives}), tmp_path / "t.parquet", row_group_size=300
    )
    table = read_table(tmp_path / "t.parquet")
    got = to_numpy(table.column("user"))
    assert got.dtype == np.int32 and np.array_equal(got, users)
    chunked = pa.chunked_array([pa.array([1, 2], pa.int32()), pa.array([3], pa.int32())])
    assert np.array_equal(to_numpy(chunked), [1, 2, 3])
    flat = to_numpy(table.column("negatives").combine_chunks().flatten()).reshape(-1, 3)
    assert np.array_equal(flat, np.arange(3000).reshape(-1, 3))
    sliced = pa.array(np.arange(10, dtype=np.int64)).slice(3, 4)  # a non-zero offset
    assert np.array_equal(to_numpy(sliced), [3, 4, 5, 6])
    for values in (pa.array([1.5, 2.5], pa.float32()), pa.array([7, 9], pa.uint16())):
        assert (
            np.array_equal(to_numpy(values), values.to_numpy())
            and to_numpy(values).dtype == values.to_numpy().dtype
        )
    assert to_numpy(pa.array([1, None], pa.int32())).tolist()[0] == 1  # nulls: pyarrow's general path
