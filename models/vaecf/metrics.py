"""Top-k ranking metrics of VAE-CF (docs ANCHORS section 2): NDCG@100, Recall@20, Recall@50.

Protocol: each held-out user's fold-in items are masked out (score -inf), the remaining items ranked
by score, and the top k compared with the user's target items.
- Recall@k = hits in the top k / min(k, |targets|)  (the paper's normalisation: 1 is reachable);
- NDCG@k = DCG@k / IDCG, DCG@k = sum over hits at 0-based rank r of 1/log2(r + 2), IDCG = the DCG of
  min(k, |targets|) hits at the top.
Everything is per user (tensors of shape (U,)); callers sum and all-reduce.
"""

from __future__ import annotations

import torch
from torch import Tensor

NDCG_K = 100
RECALL_KS = (20, 50)


def mask_foldin(scores: Tensor, rows: Tensor, items: Tensor) -> Tensor:
    """Set scores[rows, items] = -inf in place (the fold-in items are never recommended)."""
    scores[rows, items] = -torch.inf
    return scores


def ranking_metrics(
    scores: Tensor,
    target_rows: Tensor,
    target_items: Tensor,
    *,
    ndcg_k: int = NDCG_K,
    recall_ks: tuple[int, ...] = RECALL_KS,
) -> dict[str, Tensor]:
    """Per-user NDCG@ndcg_k and Recall@k from scores (U, I), fold-in already masked, and targets.

    Targets are nonzeros (target_rows[j], target_items[j]); a user without targets scores 0.
    """
    n_users, n_items = scores.shape
    kmax = min(max(ndcg_k, *recall_ks), n_items)
    top = torch.topk(scores.float(), kmax, dim=1).indices  # (U, kmax), best first
    is_target = torch.zeros(n_users, n_items, dtype=torch.bool, device=scores.device)
    is_target[target_rows, target_items] = True
    hits = is_target.gather(1, top).float()  # (U, kmax)
    n_targets = torch.bincount(target_rows, minlength=n_users)  # (U,)

    discount = 1.0 / torch.log2(torch.arange(2, kmax + 2, device=scores.device, dtype=torch.float32))
    k = min(ndcg_k, kmax)
    dcg = (hits[:, :k] * discount[:k]).sum(dim=1)
    ideal = torch.cumsum(discount, 0)[(n_targets.clamp(min=1, max=ndcg_k) - 1).clamp(max=kmax - 1)]
    out = {f"ndcg@{ndcg_k}": torch.where(n_targets > 0, dcg / ideal, 0.0)}
    for r in recall_ks:
        found = hits[:, : min(r, kmax)].sum(dim=1)
        out[f"recall@{r}"] = found / n_targets.clamp(min=1, max=r).float()
    return out
