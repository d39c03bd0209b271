"""The NCF training data contract: the Parquet folder `ncflow data --protocol ncf` writes, as tensors.

Everything lives on the training device from the start: per step there is no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.manifest import read_processed_manifest
from models.common.parquet import read_table, to_numpy


@dataclass(frozen=True)
class NCFData:
    train_user: torch.Tensor  # (P,) int32, sorted by (user, item)
    train_item: torch.Tensor  # (P,) int32
    candidates: torch.Tensor  # (T, 1+K) int32: column 0 the test positive, then K test negatives
    test_user: (
        torch.Tensor
    )  # (T,) int32 ascending: row r of candidates is user test_user[r] (leave-latest-out: all)
    n_users: int
    n_items: int
    manifest: dict
    valid_user: torch.Tensor | None = None  # (V,) int32 ascending: users with a validation item
    valid_candidates: torch.Tensor | None = None  # (V, 1+K) int32: their validation positive, negatives
    # The temporal protocol: every target of each test user (indptr (T+1,) int64, items), for full ranking;
    # None: the test positive (column 0 of candidates) is each test user's one target.
    targets: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def has_validation(self) -> bool:
        return self.valid_user is not None

    @property
    def train_keys(self) -> torch.Tensor:
        """Sorted int64 keys user*n_items+item of the training positives (for verified negatives)."""
        return self.train_user.long() * self.n_items + self.train_item.long()


def load_ncf_data(folder: Path, device: torch.device) -> NCFData:
    folder = Path(folder)
    manifest = read_processed_manifest(folder, "ncf")
    train = read_table(folder / "train.parquet")
    test_user, candidates = read_heldout(folder / "test.parquet")

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.int32)).to(device)  # a writable copy

    valid = read_heldout(folder / "valid.parquet") if (folder / "valid.parquet").is_file() else None
    counts = manifest["counts"]
    return NCFData(
        train_user=put(to_numpy(train.column("user"))),
        train_item=put(to_numpy(train.column("item"))),
        candidates=put(candidates),
        test_user=put(test_user),
        n_users=int(counts["users"]),
        n_items=int(counts["items"]),
        manifest=manifest,
        valid_user=None if valid is None else put(valid[0]),
        valid_candidates=None if valid is None else put(valid[1]),
        targets=read_targets(folder / "targets.parquet") if (folder / "targets.parquet").is_file() else None,
    )


def read_heldout(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(users (R,), candidates (R, 1+K): the held-out positive, then its K negatives) of test/valid.parquet."""
    table = read_table(path)
    k = table.schema.field("negatives").type.list_size
    negatives = to_numpy(table.column("negatives").combine_chunks().flatten()).reshape(-1, k)
    candidates = np.concatenate([to_numpy(table.column("item"))[:, None], negatives], axis=1)
    return to_numpy(table.column("user")), candidates


def read_targets(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of targets.parquet: each test user's targets, in test.parquet's row order."""
    items = read_table(path).column("items").combine_chunks()
    offsets = to_numpy(items.offsets).astype(np.int64)
    return offsets - offsets[0], to_numpy(items.flatten()).astype(np.int64)
