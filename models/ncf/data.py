"""The NCF training data contract: the Parquet folder `ncflow data --protocol ncf` writes, as tensors.

Everything lives on the training device from the start: per step there is no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.manifest import read_processed_manifest
from models.common.parquet import read_table


@dataclass(frozen=True)
class NCFData:
    train_user: torch.Tensor  # (P,) int32, sorted by (user, item)
    train_item: torch.Tensor  # (P,) int32
    candidates: torch.Tensor  # (U, 1+K) int32: column 0 the test positive, then K test negatives
    n_users: int
    n_items: int
    manifest: dict

    @property
    def train_keys(self) -> torch.Tensor:
        """Sorted int64 keys user*n_items+item of the training positives (for verified negatives)."""
        return self.train_user.long() * self.n_items + self.train_item.long()


def load_ncf_data(folder: Path, device: torch.device) -> NCFData:
    folder = Path(folder)
    manifest = read_processed_manifest(folder, "ncf")
    train = read_table(folder / "train.parquet")
    test = read_table(folder / "test.parquet")
    k = test.schema.field("negatives").type.list_size
    negatives = test.column("negatives").combine_chunks().flatten().to_numpy().reshape(-1, k)
    candidates = np.concatenate([test.column("item").to_numpy()[:, None], negatives], axis=1)

    def put(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, dtype=np.int32)).to(device)  # a writable copy

    counts = manifest["counts"]
    return NCFData(
        train_user=put(train.column("user").to_numpy()),
        train_item=put(train.column("item").to_numpy()),
        candidates=put(candidates),
        n_users=int(counts["users"]),
        n_items=int(counts["items"]),
        manifest=manifest,
    )
