"""What a dataset's source looked like when a run last accepted it: rows, checksum and the distinct users
and items, so the next run's data checks can compare (a drop in rows, new users and items).

    <data_dir>/snapshots/<dataset>/
      snapshot.json     dataset, md5, rows, when
      users.parquet     the distinct user ids (int64 or string)
      items.parquet     the distinct item ids

Written whole (a temporary folder renamed into place) when a run's checks pass; ml-20m's are about
1 MB. Two runs of one dataset at once take turns on its lock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ncflow.atomic import atomic_dir
from ncflow.data.interactions import RawLog
from ncflow.locks import exclusive


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    md5: str
    rows: int
    users: pa.Array  # distinct original user ids
    items: pa.Array
    taken_at: float

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def overlap(self, other: Snapshot, kind: str) -> int:
        """How many of this snapshot's users (or items) `other` has too (0 when their id types differ)."""
        return shared(getattr(self, kind), getattr(other, kind))

    def cross_overlap(self, other: Snapshot) -> tuple[int, int]:
        """(this snapshot's users among `other`'s items, its items among `other`'s users): high when the
        user and item columns were swapped."""
        return shared(self.users, other.items), shared(self.items, other.users)


def shared(mine: pa.Array, theirs: pa.Array) -> int:
    """How many of `mine` are in `theirs` (0 when their id types differ)."""
    if mine.type != theirs.type:
        return 0
    return pc.sum(pc.is_in(mine, value_set=theirs)).as_py() or 0


def summarize(dataset: str, raw: RawLog, md5: str) -> Snapshot:
    def distinct(name: str) -> pa.Array:
        return pc.unique(raw.table.column(name).drop_null())

    return Snapshot(dataset, md5, len(raw), distinct("user"), distinct("item"), time.time())


def folder(data_dir: Path, dataset: str) -> Path:
    return Path(data_dir) / "snapshots" / dataset


def load(data_dir: Path, dataset: str) -> Snapshot | None:
    where = folder(data_dir, dataset)
    if not (where / "snapshot.json").is_file():
        return None
    meta = json.loads((where / "snapshot.json").read_text())
    ids = {
        kind: pq.read_table(where / f"{kind}.parquet").column("id").combine_chunks()
        for kind in ("users", "items")
    }
    return Snapshot(meta["dataset"], meta["md5"], meta["rows"], ids["users"], ids["items"], meta["taken_at"])


def save(data_dir: Path, snapshot: Snapshot) -> Path:
    where = folder(data_dir, snapshot.dataset)
    meta = {
        "dataset": snapshot.dataset,
        "md5": snapshot.md5,
        "rows": snapshot.rows,
        "taken_at": snapshot.taken_at,
    }
    with exclusive(where), atomic_dir(where) as tmp:
        (tmp / "snapshot.json").write_text(json.dumps(meta, indent=2) + "\n")
        for kind in ("users", "items"):
            pq.write_table(pa.table({"id": getattr(snapshot, kind)}), tmp / f"{kind}.parquet")
    return where
