"""The VAE-CF training data contract: the folder `ncflow data --protocol vaecf` writes, as CSR tensors.

Each split is a CSR matrix (row = user, column = item index). The tensors live on the training device
from the start; a host copy of each indptr is kept too, so that slicing a batch's nonzeros out of a
split needs no device-to-host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.common.manifest import read_processed_manifest
from models.common.parquet import read_table, to_numpy

SPLITS = ("train", "valid_foldin", "valid_target", "test_foldin", "test_target")


@dataclass(frozen=True)
class CSRTensors:
    indptr: torch.Tensor  # (rows + 1,) int64 on the device
    indices: torch.Tensor  # (nnz,) int64 item indices, sorted within a row
    indptr_host: np.ndarray  # the same indptr in host memory: batch boundaries without a device sync
    user_ids: np.ndarray  # (rows,) original user ids

    @property
    def rows(self) -> int:
        return len(self.indptr_host) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr_host[-1])

    @classmethod
    def from_numpy(cls, indptr: np.ndarray, indices: np.ndarray, user_ids: np.ndarray, device) -> CSRTensors:
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        # int64 indices: embedding_bag wants offsets and indices of one dtype, and offsets are int64.
        return cls(
            indptr=torch.from_numpy(indptr.copy()).to(device),
            indices=torch.from_numpy(np.array(indices, dtype=np.int64)).to(device),
            indptr_host=indptr,
            user_ids=np.asarray(user_ids),
        )


@dataclass(frozen=True)
class VAEData:
    train: CSRTensors
    valid_foldin: CSRTensors
    valid_target: CSRTensors
    test_foldin: CSRTensors
    test_target: CSRTensors
    n_items: int
    manifest: dict
    seen: dict[str, CSRTensors] = field(default_factory=dict)  # per split, when more than the fold-in

    def heldout(self, name: str) -> tuple[CSRTensors, CSRTensors]:
        """(fold-in, targets) of 'valid' or 'test': row r of both is the same user."""
        return getattr(self, f"{name}_foldin"), getattr(self, f"{name}_target")

    def masked(self, name: str) -> CSRTensors:
        """The items never ranked for 'valid' or 'test' users: their fold-in items, and on the NCF split
        at test also their validation item (seen, but not the model's input: NeuMF never trained on it)."""
        return self.seen.get(name, getattr(self, f"{name}_foldin"))


def read_csr(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64, indices int32, user ids) of one `<split>.parquet` (user_id, items: list<int32>)."""
    table = read_table(path)
    items = table.column("items").combine_chunks()
    offsets = to_numpy(items.offsets).astype(np.int64)
    indptr = offsets - offsets[0]  # a sliced array's offsets need not start at 0
    indices = to_numpy(items.flatten())
    return indptr, indices, to_numpy(table.column("user_id"))


def load_vae_data(folder: Path, device: torch.device | str = "cpu") -> VAEData:
    """A vaecf folder, or an ncf one (made with --validation) as the same rows: see ncf_as_vae."""
    folder = Path(folder)
    from models.common.heldout import folder_protocol

    if folder_protocol(folder) == "ncf":
        return ncf_as_vae(folder, device)
    manifest = read_processed_manifest(folder, "vaecf")
    n_items = int(manifest["counts"]["items"])
    parts = {}
    for name in SPLITS:
        indptr, indices, user_ids = read_csr(folder / f"{name}.parquet")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
            raise SystemExit(f"error: {folder / name}.parquet has item indices outside [0, {n_items})")
        parts[name] = CSRTensors.from_numpy(indptr, indices, user_ids, device)
    for split in ("valid", "test"):
        foldin, target = parts[f"{split}_foldin"], parts[f"{split}_target"]
        if not np.array_equal(foldin.user_ids, target.user_ids):
            raise SystemExit(
                f"error: {folder}: {split}_foldin and {split}_target rows are not the same users"
            )
    return VAEData(**parts, n_items=n_items, manifest=manifest)


def ncf_as_vae(folder: Path, device: torch.device | str = "cpu") -> VAEData:
    """The NCF split (leave latest out) as Mult-VAE's rows (models/common/heldout.py): every user's
    training items train; validation users fold in those items to find their second-latest item; at
    test every user folds in the same training items to find their latest, the validation item masked.
    So Mult-VAE is scored on exactly the data NeuMF and EASE are (the `best` alias's comparison)."""
    from models.common.heldout import load_splits

    splits = load_splits(folder, device)
    if splits.valid is None:
        raise SystemExit(
            f"error: {folder} has no validation split: Mult-VAE picks its epoch on one (--validation)"
        )

    def rows(csr) -> CSRTensors:
        return CSRTensors(csr.indptr, csr.indices, csr.indptr_host, np.arange(csr.rows))

    valid, test = splits.valid, splits.test
    return VAEData(
        train=rows(splits.train), valid_foldin=rows(valid.inputs), valid_target=rows(valid.targets),
        test_foldin=rows(test.inputs), test_target=rows(test.targets), n_items=splits.n_items,
        manifest=splits.manifest, seen={"test": rows(test.seen)},
    )  # fmt: skip


@dataclass(frozen=True)
class SparseBatch:
    """Rows [lo, hi) of a CSR split, in the shapes the model and the loss take."""

    indices: torch.Tensor  # (nnz,) int64 item indices
    offsets: torch.Tensor  # (B,) int64: where each row starts in `indices` (embedding_bag's offsets)
    rows: torch.Tensor  # (nnz,) int64: the batch row of each nonzero
    counts: torch.Tensor  # (B,) int64: nonzeros per row

    @property
    def size(self) -> int:
        return self.offsets.shape[0]


def row_slice(csr: CSRTensors, lo: int, hi: int) -> SparseBatch:
    """Rows [lo, hi): views and two small kernels; boundaries come from the host indptr, so no sync."""
    a, b = int(csr.indptr_host[lo]), int(csr.indptr_host[hi])
    starts = csr.indptr[lo : hi + 1]
    counts = starts[1:] - starts[:-1]
    rows = torch.repeat_interleave(
        torch.arange(hi - lo, device=counts.device), counts, output_size=b - a
    )  # output_size given: no device sync  # fmt: skip
    return SparseBatch(csr.indices[a:b], starts[:-1] - a, rows, counts)


def take_rows(csr: CSRTensors, order: torch.Tensor) -> CSRTensors:
    """The CSR of rows `order` (a device int64 tensor), in that order: one epoch's shuffled shard.

    All on the device; one device-to-host copy of the new indptr (per epoch, not per step).
    """
    starts = csr.indptr[order]
    counts = csr.indptr[order + 1] - starts  # (R,)
    indptr = torch.zeros(len(order) + 1, dtype=torch.int64, device=order.device)
    torch.cumsum(counts, 0, out=indptr[1:])
    indptr_host = indptr.cpu().numpy()
    nnz = int(indptr_host[-1])
    row = torch.repeat_interleave(torch.arange(len(order), device=order.device), counts, output_size=nnz)
    within = torch.arange(nnz, device=order.device) - indptr[row]  # position inside the row
    indices = csr.indices[starts[row] + within]
    no_ids = np.empty(0, dtype=np.int64)  # a training shard needs no original ids (and no extra copy)
    return CSRTensors(indptr, indices, indptr_host, no_ids)
