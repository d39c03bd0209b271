"""HR@k and NDCG@k for leave-one-out evaluation with sampled negatives (torch, CPU or CUDA).

Row u of `candidates` is [test positive, 100 test negatives]. The negatives are drawn with replacement,
so they may repeat and may even equal the positive. MLPerf's convention, used by the published ml-20m
numbers: each distinct item counts once and the positive always survives, so a negative equal to the
positive, or to an earlier negative, is ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_duplicates(candidates: Tensor) -> Tensor:
    """bool (U, C): the columns that count. Column 0 always; a negative only if it differs from the
    positive and from every earlier negative."""
    neg = candidates[:, 1:]  # (U, C-1)
    # A stable sort puts equal items next to each other in column order, so the first of each run is
    # the earliest copy. O(C log C) per row instead of a (U, C, C) comparison table.
    srt, order = torch.sort(neg, dim=1, stable=True)
    first = torch.ones_like(srt, dtype=torch.bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    keep = torch.empty_like(first).scatter_(1, order, first)  # back to column order
    keep &= neg != candidates[:, :1]
    return torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)


def hit_ndcg(scores: Tensor, candidates: Tensor, k: int = 10) -> tuple[Tensor, Tensor]:
    """Per-user HR@k and NDCG@k (float32, (U,)) from scores (U, C) of candidates (U, C), column 0 the positive.

    rank = number of surviving negatives scoring >= the positive. Ties count against the positive: the
    pessimistic choice, and a deterministic one (a topk's order among equal scores is not).
    HR@k = rank < k; NDCG@k = 1 / log2(rank + 2) on a hit, else 0.
    """
    if scores.shape != candidates.shape or scores.ndim != 2:
        raise ValueError(f"scores and candidates must both be (U, C), got {scores.shape}, {candidates.shape}")
    keep = mask_duplicates(candidates)[:, 1:]  # (U, C-1)
    rank = ((scores[:, 1:] >= scores[:, :1]) & keep).sum(dim=1)  # (U,)
    hits = rank < k
    ndcg = torch.where(hits, 1.0 / torch.log2(rank.to(torch.float32) + 2.0), 0.0)
    return hits.to(torch.float32), ndcg.to(torch.float32)
