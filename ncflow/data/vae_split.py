"""The VAE-CF protocol (ANCHORS.md section 2): strong positives, held-out users, 80/20 fold-in.

One code path for NumPy and CuPy. Each split is a CSR matrix (row = user, values = item indices),
which is exactly an Arrow list column on disk. Decisions:
- held-out users are counted as min(heldout_users, cap * users) each, so ml-100k keeps ~94 per split;
- held-out users' items outside the training users' items are dropped; a held-out user left with
  fewer than 2 items (no fold-in and target both) is dropped too;
- targets per held-out user: max(1, floor(0.2 * n)) items, chosen by the counter-based generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ncflow.data.arrays import renumber, run_ends, sort_order
from ncflow.errors import NcflowError
from ncflow.rng import random_bits, stream_key

SPLITS = ("train", "valid_foldin", "valid_target", "test_foldin", "test_target")


@dataclass(frozen=True)
class CSR:
    indptr: Any  # (rows + 1,) int64
    indices: Any  # (nnz,) int32: item indices
    row_ids: Any  # (rows,) int64: original user ids


@dataclass(frozen=True)
class VAESplit:
    parts: dict[str, CSR]  # keyed by SPLITS
    item_ids: Any  # (I,) int64: index -> original id

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def vae_split(
    xp: ModuleType,
    user,
    item,
    rating,
    *,
    min_rating: float | None = 4.0,  # None: every row is a positive
    min_user_items: int = 5,
    heldout_users: int = 10_000,
    heldout_fraction_cap: float = 0.1,
    foldin_fraction: float = 0.8,
    seed: int = 0,
) -> VAESplit:
    keep = xp.ones(len(rating), dtype=bool) if min_rating is None else rating >= min_rating
    u, user_ids = renumber(xp, user[keep])
    i, original_item = renumber(xp, item[keep])
    order = sort_order(xp, u, i)
    pairs = u[order].astype(xp.int64) * len(original_item) + i[order]
    order = order[run_ends(xp, pairs)]  # one row per (user, item)
    u, i = u[order], i[order]
    counts = xp.bincount(u, minlength=len(user_ids))
    active = xp.nonzero(counts >= min_user_items)[0]
    n_held = min(heldout_users, int(heldout_fraction_cap * len(active)))
    if n_held < 1:
        counted = "items" if min_rating is None else f"ratings >= {min_rating}"
        raise NcflowError(
            f"only {len(active)} users have >= {min_user_items} {counted}: too few to hold out "
            "validation and test users"
        )
    shuffled = active[xp.argsort(random_bits(xp, active, stream_key(seed, 0x5AE)))]
    role = xp.full(len(user_ids), -1, dtype=xp.int8)  # -1 dropped, 0 train, 1 valid, 2 test
    role[shuffled[2 * n_held :]] = 0
    role[shuffled[:n_held]] = 1
    role[shuffled[n_held : 2 * n_held]] = 2
    row_role = role[u]

    train_items = xp.unique(i[row_role == 0])  # the item universe: what training users have seen
    item_index = xp.full(len(original_item), -1, dtype=xp.int32)
    item_index[train_items] = xp.arange(len(train_items), dtype=xp.int32)
    i = item_index[i]
    kept = (row_role >= 0) & (i >= 0)
    u, i, row_role = u[kept], i[kept], row_role[kept]

    parts = {"train": csr(xp, u[row_role == 0], i[row_role == 0], user_ids)}
    for code, name in ((1, "valid"), (2, "test")):
        rows = row_role == code
        foldin, target = fold_in_split(xp, u[rows], i[rows], foldin_fraction, stream_key(seed, 0xF01D, code))
        parts[f"{name}_foldin"] = csr(xp, u[rows][foldin], i[rows][foldin], user_ids)
        parts[f"{name}_target"] = csr(xp, u[rows][target], i[rows][target], user_ids)
    return VAESplit(parts, original_item[train_items])


def fold_in_split(xp: ModuleType, u, i, foldin_fraction: float, key: int):
    """Masks (fold-in, target) over one user-sorted group of rows; users with < 2 items get neither."""
    shuffle = sort_order(xp, u, random_bits(xp, xp.arange(len(u)), key) >> xp.uint64(2))  # by user, random
    u_sorted = u[shuffle]
    counts = xp.bincount(u_sorted)
    n = counts[u_sorted]
    starts = xp.cumsum(counts) - counts
    position = xp.arange(len(u)) - starts[u_sorted]
    n_target = xp.maximum(1, ((1 - foldin_fraction) * n).astype(xp.int64))
    usable = n >= 2
    target = xp.zeros(len(u), dtype=bool)
    foldin = xp.zeros(len(u), dtype=bool)
    target[shuffle] = usable & (position < n_target)
    foldin[shuffle] = usable & (position >= n_target)
    return foldin, target


def csr(xp: ModuleType, u, i, user_ids) -> CSR:
    """Rows in user order, items sorted within each row."""
    order = sort_order(xp, u, i)
    u, i = u[order], i[order]
    rows, counts = xp.unique(u, return_counts=True)
    indptr = xp.zeros(len(rows) + 1, dtype=xp.int64)
    indptr[1:] = xp.cumsum(counts)
    return CSR(indptr, i.astype(xp.int32), user_ids[rows])
