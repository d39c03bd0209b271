"""Full-ranking evaluation and top-k: each user's held-out items ranked against every item they have not seen.

Sampled metrics (the positive against 100 random negatives) flatter models and can even reorder them
(Krichene and Rendle, KDD 2020), so models are also judged here against the whole catalogue. One scorer
serves NCF, VAE-CF and the item-popularity baseline, on CPUs and GPUs (torch, so CUDA tensors stay on
the device): a model supplies `score_fn(users) -> (U, items)` scores; users go through it in chunks; a
user's seen items (training items; for test also the validation item) are set to -inf before ranking.

Per chunk it returns the top-k (best first; seen items never appear) and, for each held-out item, its
rank: the number of OTHER unseen items scoring >= it (ties count against it, as in models/ncf/metrics.py:
pessimistic and deterministic, where a topk's order among equal scores is not). From the ranks:
- HR@10: 1 if any held-out item has rank < 10;
- NDCG@10: sum of 1/log2(rank + 2) over held-out items with rank < 10, over the same sum for the best
  possible ranks 0..min(10, |held out|)-1;
- Recall@20: held-out items with rank < 20, over min(20, |held out|) (1 is reachable).
With one held-out item (NCF) these are the textbook leave-one-out HR@10, NDCG@10 and HR@20.

    ranked = rank_users(score_fn, users, seen, k=100)               # top-k for every user (recommend)
    full_rank_metrics(score_fn, users, seen, targets)               # {"full_hr@10": ..., ...}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ScoreFn = Callable[[Tensor], Tensor]  # users (U,) int64 -> scores (U, items), higher is better
HR_K, NDCG_K, RECALL_K = 10, 10, 20
METRICS = (f"full_hr@{HR_K}", f"full_ndcg@{NDCG_K}", f"full_recall@{RECALL_K}")
COMPARE_MAX_TARGETS = 8  # up to this many held-out items per user: one compare pass each, else a sort


@dataclass(frozen=True)
class CSR:
    """Item lists per row (a user's seen items, or held-out items), on the scoring device."""

    indptr: Tensor  # (rows + 1,) int64
    indices: Tensor  # (nnz,) int64 item indices
    indptr_host: np.ndarray  # the same indptr on the host: chunk boundaries without a device sync

    @property
    def rows(self) -> int:
        return len(self.indptr_host) - 1

    @classmethod
    def from_numpy(cls, indptr: np.ndarray, indices: np.ndarray, device: torch.device | str = "cpu") -> CSR:
        indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        return cls(
            torch.from_numpy(indptr.copy()).to(device),
            torch.from_numpy(np.asarray(indices, dtype=np.int64).copy()).to(device),
            indptr,
        )

    @classmethod
    def from_pairs(cls, rows, items, n_rows: int, device: torch.device | str | None = None) -> CSR:
        """The CSR of (row, item) pairs in any order (duplicates kept: masking twice is harmless).

        NumPy arrays or tensors; built on `device` (default: the tensors' own), so a GPU sorts its 20M
        training pairs itself in milliseconds.
        """
        rows, items = torch.as_tensor(rows), torch.as_tensor(items)
        device = device if device is not None else rows.device
        rows, items = rows.to(device, torch.int64), items.to(device, torch.int64)
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n_rows):
            raise ValueError(f"row indices must lie in [0, {n_rows})")
        indptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=device)
        torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=indptr[1:])
        order = torch.argsort(rows, stable=True)
        return cls(indptr, items[order].contiguous(), indptr.cpu().numpy())


def gather_rows(csr: CSR, rows: Tensor) -> tuple[Tensor, Tensor]:
    """(position in `rows`, item) of every entry of rows `rows` (any order): one host sync for the size."""
    starts = csr.indptr[rows]
    counts = csr.indptr[rows + 1] - starts
    total = int(counts.sum())
    local = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts, output_size=total)
    offsets = torch.cumsum(counts, 0) - counts  # where each row starts in the output
    within = torch.arange(total, device=rows.device) - offsets[local]
    return local, csr.indices[starts[local] + within]


@dataclass(frozen=True)
class RankedChunk:
    users: Tensor  # (U,) the chunk's users, as passed to score_fn
    top_items: Tensor  # (U, k) int64, best first; -1 where a user has fewer than k unseen items
    top_scores: Tensor  # (U, k) float32
    target_rows: Tensor | None  # (T,) int64: the chunk row of each held-out item
    target_ranks: Tensor | None  # (T,) int64: unseen items other than it scoring >= it


def target_ranks(
    scores: Tensor, rows: Tensor, items: Tensor, compare_max: int = COMPARE_MAX_TARGETS
) -> Tensor:
    """Rank of each held-out item (rows[j], items[j]) among its row's finite scores (seen = -inf).

    Few held-out items per row (NCF: one): one (U, I) comparison pass per column of them, the cheapest
    on a GPU. Many (VAE-CF's targets): sort each row once and binary-search every target in it.
    """
    n_rows, n_items = scores.shape
    if len(rows) == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    counts = torch.bincount(rows, minlength=n_rows)
    order = torch.argsort(rows, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.empty_like(rows)
    pos[order] = torch.arange(len(rows), device=rows.device) - starts[rows[order]]  # column within its row
    width = int(counts.max())
    wanted = torch.full((n_rows, width), torch.nan, device=scores.device)
    wanted[rows, pos] = scores[rows, items]
    if width <= compare_max:
        at_least = torch.stack([(scores >= wanted[:, j : j + 1]).sum(dim=1) for j in range(width)], dim=1)
    else:
        ascending = torch.sort(scores, dim=1).values
        at_least = n_items - torch.searchsorted(ascending, wanted.nan_to_num(nan=torch.inf), side="left")
    return at_least[rows, pos] - 1  # minus the item itself


@torch.no_grad()
def rank_chunk(
    scores: Tensor, seen: tuple[Tensor, Tensor], targets: tuple[Tensor, Tensor] | None, k: int
) -> tuple:
    """Mask `seen` (chunk rows, items) in `scores` (U, I), then (top items, top scores, target ranks)."""
    scores = scores.float()
    scores[seen[0], seen[1]] = -torch.inf
    ranks = None if targets is None else target_ranks(scores, *targets)
    top_scores, top_items = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    top_items = torch.where(torch.isfinite(top_scores), top_items, -1)
    return top_items, top_scores, ranks


def rank_users(
    score_fn: ScoreFn, users: Tensor, seen: CSR, *, k: int, targets: CSR | None = None, chunk: int = 1024,
) -> Iterator[RankedChunk]:  # fmt: skip
    """Chunks of `users` (row u of `seen` is user u; row r of `targets` is users[r]) scored and ranked."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    users = users.long()
    for lo in range(0, len(users), chunk):
        batch = users[lo : lo + chunk]
        with torch.no_grad():
            scores = score_fn(batch)
        wanted = None
        if targets is not None:
            wanted = gather_rows(targets, torch.arange(lo, lo + len(batch), device=batch.device))
        top_items, top_scores, ranks = rank_chunk(scores, gather_rows(seen, batch), wanted, k)
        yield RankedChunk(batch, top_items, top_scores, None if wanted is None else wanted[0], ranks)


def metric_sums(rows: Tensor, ranks: Tensor, n_rows: int) -> tuple[Tensor, Tensor]:
    """([HR@10, NDCG@10, Recall@20] summed over rows with held-out items, number of such rows)."""
    dev = ranks.device
    n_targets = torch.bincount(rows, minlength=n_rows)
    hits10 = torch.zeros(n_rows, device=dev).index_add_(0, rows, (ranks < HR_K).float())
    hits20 = torch.zeros(n_rows, device=dev).index_add_(0, rows, (ranks < RECALL_K).float())
    gain = torch.where(ranks < NDCG_K, 1.0 / torch.log2(ranks.float() + 2.0), 0.0)
    dcg = torch.zeros(n_rows, device=dev).index_add_(0, rows, gain)
    ideal = torch.cumsum(1.0 / torch.log2(torch.arange(NDCG_K, device=dev, dtype=torch.float32) + 2.0), 0)
    has = n_targets > 0
    idcg = ideal[(n_targets.clamp(min=1, max=NDCG_K) - 1)]
    per_row = torch.stack(
        [(hits10 > 0).float(), dcg / idcg, hits20 / n_targets.clamp(min=1, max=RECALL_K).float()]
    )  # (3, rows)
    return (per_row * has).double().sum(dim=1), has.sum()


def full_rank_metrics(
    score_fn: ScoreFn, users: Tensor, seen: CSR, targets: CSR, *, chunk: int = 1024
) -> dict[str, float]:
    """Mean full-ranking HR@10, NDCG@10 and Recall@20 over the `users` with held-out items, and their count."""
    if targets.rows != len(users):
        raise ValueError(f"targets has {targets.rows} rows for {len(users)} users")
    sums = torch.zeros(len(METRICS), dtype=torch.float64, device=users.device)
    counted = 0
    for part in rank_users(score_fn, users, seen, k=1, targets=targets, chunk=chunk):
        s, n = metric_sums(part.target_rows, part.target_ranks, len(part.users))
        sums += s
        counted += int(n)
    values = (sums / max(1, counted)).tolist()
    return {**dict(zip(METRICS, values, strict=True)), "full_users": counted}


def popularity_scorer(train_items: Tensor, n_items: int) -> ScoreFn:
    """The baseline under the same protocol: every user gets items by their training popularity."""
    popularity = torch.bincount(train_items.long(), minlength=n_items).float()
    return lambda users: popularity.expand(len(users), n_items).clone()
