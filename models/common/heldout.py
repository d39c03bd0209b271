"""Either protocol's processed folder as one shape: a training matrix and held-out users to score.

Fold-in models (EASE, Mult-VAE) and the baselines on every card score a user from a row of items, so
the two splits differ only in which rows and which items:
- NCF split (leave latest out): every user trains; at validation a user's input is their training
  items and the target their second-latest item; at test the input is the same training items (what
  NeuMF's user embedding saw: the same information for every model), the validation item is masked
  as seen, and the target is the latest item. The sampled candidates (target + test negatives) come
  along for the sampled HR@10 / NDCG@10.
- VAE-CF split (held-out users): training users train; a held-out user's input and seen items are
  their fold-in items, the targets their other items.

    splits = load_splits(folder, device)       # protocol read from manifest.json
    splits.train                               # CSR: row = training user, items
    splits.heldout("valid").inputs             # CSR: row r = the r-th validation user's input items
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from models.common.full_rank import CSR, gather_rows
from models.common.parquet import read_table, to_numpy


@dataclass(frozen=True)
class Heldout:
    """One evaluation split: row r of each CSR is the same user."""

    inputs: CSR  # what a fold-in model is given
    seen: CSR  # never ranked: the inputs, plus (NCF split, test) the validation item
    targets: CSR  # the held-out items
    candidates: torch.Tensor | None = None  # NCF split: (R, 1+K) target, then its sampled negatives
    users: torch.Tensor | None = None  # NCF split: (R,) each row's user index (NeuMF scores users)

    @property
    def rows(self) -> int:
        return self.inputs.rows


@dataclass(frozen=True)
class Splits:
    protocol: str  # ncf | vaecf
    n_items: int
    train: CSR  # row = training user (NCF split: user index u), items
    valid: Heldout | None  # None: an NCF folder made without --validation
    test: Heldout
    manifest: dict

    def heldout(self, name: str) -> Heldout:
        split = self.valid if name == "valid" else self.test
        if split is None:
            raise SystemExit(
                "error: this dataset has no validation split: make it with `ncflow data DATASET --validation`"
            )
        return split


def select_rows(csr: CSR, rows: torch.Tensor) -> CSR:
    """The CSR of rows `rows` of `csr`, in that order."""
    local, items = gather_rows(csr, rows.long())
    return CSR.from_pairs(local, items, len(rows))


def one_per_row(items: torch.Tensor) -> CSR:
    """A CSR holding item items[r] in row r (the NCF split's single held-out item per user)."""
    return CSR.from_pairs(torch.arange(len(items), device=items.device), items, len(items))


def folder_protocol(folder: Path) -> str | None:
    """The protocol a processed folder was split by (manifest.json), or None without one."""
    path = Path(folder) / "manifest.json"
    return json.loads(path.read_text()).get("protocol") if path.is_file() else None


def load_splits(folder: Path, device: torch.device | str = "cpu") -> Splits:
    if folder_protocol(folder) == "vaecf":
        return _vaecf_splits(Path(folder), torch.device(device))
    return _ncf_splits(Path(folder), torch.device(device))  # which reports a folder that is neither


def _ncf_splits(folder: Path, device: torch.device) -> Splits:
    from models.ncf.data import load_ncf_data

    data = load_ncf_data(folder, device)
    train = CSR.from_pairs(data.train_user, data.train_item, data.n_users)
    valid, seen_at_test = None, train
    if data.has_validation:
        users = data.valid_user.long()
        inputs = select_rows(train, users)
        valid = Heldout(
            inputs, inputs, one_per_row(data.valid_candidates[:, 0]), data.valid_candidates, users
        )
        seen_at_test = CSR.from_pairs(
            torch.cat([data.train_user, data.valid_user]),
            torch.cat([data.train_item, data.valid_candidates[:, 0]]),
            data.n_users,
        )
    users = data.test_user.long()  # every user (leave latest out), or the temporal window's test users
    if data.targets is not None:  # temporal: every new item of the window
        targets = CSR.from_numpy(*data.targets, device)
    else:
        targets = one_per_row(data.candidates[:, 0])
    if len(users) == data.n_users:  # every user, in order: the rows are the matrices themselves
        test = Heldout(train, seen_at_test, targets, data.candidates, users)
    else:
        inputs, seen = select_rows(train, users), select_rows(seen_at_test, users)
        test = Heldout(inputs, seen, targets, data.candidates, users)
    return Splits("ncf", data.n_items, train, valid, test, data.manifest)


def _vaecf_splits(folder: Path, device: torch.device) -> Splits:
    from models.vaecf.data import load_vae_data

    data = load_vae_data(folder, device)

    def csr(rows) -> CSR:
        return CSR(rows.indptr, rows.indices, rows.indptr_host)

    def heldout(name: str) -> Heldout:
        foldin, target = data.heldout(name)
        return Heldout(csr(foldin), csr(foldin), csr(target))

    return Splits("vaecf", data.n_items, csr(data.train), heldout("valid"), heldout("test"), data.manifest)


def dense_rows(csr: CSR, rows: torch.Tensor, n_items: int, dtype=torch.float32) -> torch.Tensor:
    """Rows `rows` of `csr` as a dense (len(rows), n_items) 0/1 matrix: a fold-in model's input."""
    local, items = gather_rows(csr, rows.long())
    x = torch.zeros(len(rows), n_items, dtype=dtype, device=csr.indices.device)
    x[local, items] = 1.0
    return x


def known_items(folder: Path) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(user ids as stored, indptr, item indices): every user of a processed folder with all of their
    known items, sorted: what a fold-in model's `recommend --all` starts from and never recommends.
    NCF split: training, validation and test items; VAE-CF split: training users' rows and held-out
    users' fold-in and target items together."""
    folder = Path(folder)
    rows, items, ids = [], [], []
    if folder_protocol(folder) == "vaecf":
        offset = 0
        for parts in (("train",), ("valid_foldin", "valid_target"), ("test_foldin", "test_target")):
            for name in parts:
                table = read_table(folder / f"{name}.parquet")
                column = table.column("items").combine_chunks()
                counts = np.diff(to_numpy(column.offsets).astype(np.int64))
                rows.append(offset + np.repeat(np.arange(len(counts)), counts))
                items.append(to_numpy(column.flatten()).astype(np.int64))
            ids.append(table.column("user_id").combine_chunks())  # fold-in and target: the same users
            offset += table.num_rows
        user_ids = pa.concat_arrays(ids)
    else:
        user_ids = read_table(folder / "users.parquet").column("id").combine_chunks()
        for name in ("train", "valid", "test"):
            if (folder / f"{name}.parquet").is_file():
                table = read_table(folder / f"{name}.parquet", columns=["user", "item"])
                rows.append(to_numpy(table.column("user")).astype(np.int64))
                items.append(to_numpy(table.column("item")).astype(np.int64))
    row, item = np.concatenate(rows), np.concatenate(items)
    order = np.lexsort((item, row))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=len(user_ids)))]).astype(np.int64)
    return user_ids, indptr, item[order]
