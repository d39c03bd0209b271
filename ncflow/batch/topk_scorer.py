"""A minimal all-items top-k scorer: a chunk of users against every item, seen items masked with -inf.

Deliberately small and self-contained: issue 11 part 1 brings the project's full-ranking scorer
(chunked users, seen-item mask, GPU and CPU); when it lands, `UserScorer.scores` can call it instead
and nothing else here changes.

A `UserScorer` holds everything one worker needs: the model, each user's seen items as CSR (host
and device copies), the item ids. `top_k(lo, hi, k)` scores users [lo, hi) in fixed chunks of
`chunk` users whose boundaries are multiples of `chunk` from user 0: a user's scores do not depend
on how the users were split among workers, so 1 and 2 workers give identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import Tensor

from models.common.precision import Precision, resolve_precision

PAIRS_PER_CHUNK = 1 << 24  # NCF: (users x items) pairs per forward; ~2 GB of bf16 activations at 128 wide
VAE_USERS_PER_CHUNK = 4096  # Mult-VAE: one (chunk x items) logits matrix per step


class ChunkScores(Protocol):
    def __call__(self, lo: int, hi: int) -> Tensor: ...  # (hi - lo, items) float scores


@dataclass
class UserScorer:
    user_ids: np.ndarray  # (U,) original ids, in output order
    item_ids: np.ndarray  # (I,) index -> original id
    seen_indptr: np.ndarray  # (U + 1,) int64: user u's seen items are seen_items[indptr[u]:indptr[u+1]]
    seen_items: Tensor  # (nnz,) int64 item indices, on the scoring device
    raw_scores: ChunkScores  # the model's scores for users [lo, hi) against all items
    chunk: int  # users per forward pass
    device: torch.device

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def max_seen(self) -> tuple[int, int]:
        """(the largest seen-item count, the original id of a user who has it)."""
        counts = np.diff(self.seen_indptr)
        if not len(counts):
            return 0, -1
        worst = int(np.argmax(counts))
        return int(counts[worst]), int(self.user_ids[worst])

    def scores(self, lo: int, hi: int) -> Tensor:
        """(hi - lo, items) scores with every seen item at -inf."""
        scores = self.raw_scores(lo, hi).float()
        a, b = int(self.seen_indptr[lo]), int(self.seen_indptr[hi])
        counts = torch.as_tensor(np.diff(self.seen_indptr[lo : hi + 1]), device=self.device)
        rows = torch.repeat_interleave(torch.arange(hi - lo, device=self.device), counts, output_size=b - a)
        scores[rows, self.seen_items[a:b]] = -torch.inf
        return scores

    @torch.no_grad()
    def top_k(self, lo: int, hi: int, k: int) -> pa.Table:
        """Rows (user_id, rank, item_id, score) for users [lo, hi): k per user, best first."""
        values, indices = [], []
        start = lo
        while start < hi:
            end = min(hi, (start // self.chunk + 1) * self.chunk)  # chunk boundaries fixed from user 0
            top = torch.topk(self.scores(start, end), k, dim=1)  # sorted: rank 1 first
            values.append(top.values.cpu())
            indices.append(top.indices.cpu())
            start = end
        n = hi - lo
        item_index = torch.cat(indices).numpy().reshape(-1) if n else np.empty(0, np.int64)
        return pa.table(
            {
                "user_id": pa.array(np.repeat(self.user_ids[lo:hi].astype(np.int64), k)),
                "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n)),
                "item_id": pa.array(self.item_ids[item_index].astype(np.int64)),
                "score": pa.array(torch.cat(values).numpy().reshape(-1) if n else np.empty(0, np.float32)),
            }
        )


def pick_device(device: str) -> torch.device:
    """auto: the worker's GPU if it has one (dask-cuda gives each worker one), else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def ncf_scorer(bundle_dir: Path, device: str = "auto", precision: str = "auto") -> UserScorer:
    """Every user of an NCF bundle, scored against every item; seen = the user's training items."""
    from models.ncf.bundle import load_bundle

    where = pick_device(device)
    bundle = load_bundle(bundle_dir, where)
    model = bundle.model.eval()
    mode = resolve_precision(precision, where)
    offsets = bundle.seen.offsets.to_numpy().astype(np.int64)
    seen = bundle.seen.values.to_numpy(zero_copy_only=False).astype(np.int64)
    users = np.empty(len(bundle.user_index), dtype=np.int64)
    users[list(bundle.user_index.values())] = list(bundle.user_index.keys())
    n_items = len(bundle.item_ids)
    return UserScorer(
        user_ids=users,
        item_ids=bundle.item_ids,
        seen_indptr=offsets - offsets[0],
        seen_items=torch.from_numpy(seen).to(where),
        raw_scores=_neumf_all_items(model, mode, where),
        chunk=max(1, PAIRS_PER_CHUNK // n_items),
        device=where,
    )


def _neumf_all_items(model, precision: Precision, device: torch.device) -> ChunkScores:
    """NeuMF against all items: the item side (its embeddings and its share of the first MLP layer)
    once, then per chunk of users only what depends on the user (as NeuMF.score_candidates does)."""
    config = model.config
    all_items = torch.arange(config.n_items, device=device)
    with torch.no_grad(), precision.autocast(device):
        i_mf, i_mlp = model.embed(model.item_embed, all_items)  # (I, mf), (I, mlp0/2)
        if model.mlp:
            first = model.mlp[0]
            half = first.in_features // 2
            hi_items = F.linear(i_mlp, first.weight[:, half:])  # (I, mlp1)

    @torch.no_grad()
    def scores(lo: int, hi: int) -> Tensor:
        users = torch.arange(lo, hi, device=device)
        with precision.autocast(device):
            u_mf, u_mlp = model.embed(model.user_embed, users)  # (U, mf), (U, mlp0/2)
            gmf = u_mf[:, None, :] * i_mf[None]  # (U, I, mf)
            if not model.mlp:
                return model._head(gmf, None)
            hu = F.linear(u_mlp, first.weight[:, :half], first.bias)  # (U, mlp1)
            h = model.act(hi_items[None].expand(hi - lo, -1, -1), 0, extra=hu)  # relu(hi + hu), (U, I, mlp1)
            return model._head(gmf, h)  # (U, I)

    return scores


def vaecf_scorer(
    bundle_dir: Path, data_dir: Path, device: str = "auto", precision: str = "auto"
) -> UserScorer:
    """Every user of the processed VAE-CF dataset (training and held-out alike), folded in from all of
    their known items (held-out users: fold-in and target together), which are also what is masked."""
    from models.vaecf.bundle import load_bundle
    from models.vaecf.data import SPLITS, read_csr

    where = pick_device(device)
    bundle = load_bundle(bundle_dir, where)
    model = bundle.model.eval()
    mode = resolve_precision(precision, where)
    rows: dict[int, np.ndarray] = {}
    for name in SPLITS:  # train, then each held-out user's fold-in and target rows
        indptr, indices, user_ids = read_csr(Path(data_dir) / f"{name}.parquet")
        for r, user in enumerate(user_ids.tolist()):
            part = indices[indptr[r] : indptr[r + 1]]
            rows[user] = part if user not in rows else np.union1d(rows[user], part)
    users = np.array(sorted(rows), dtype=np.int64)
    counts = np.array([len(rows[u]) for u in users.tolist()], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    items = np.concatenate([np.sort(rows[u]) for u in users.tolist()]) if len(users) else np.empty(0)
    seen = torch.from_numpy(items.astype(np.int64)).to(where)
    indptr_device = torch.from_numpy(indptr).to(where)

    @torch.no_grad()
    def scores(lo: int, hi: int) -> Tensor:
        a, b = int(indptr[lo]), int(indptr[hi])
        starts = indptr_device[lo : hi + 1]
        per_user = starts[1:] - starts[:-1]
        which = torch.repeat_interleave(torch.arange(hi - lo, device=where), per_user, output_size=b - a)
        with mode.autocast(where):
            weights = model.input_weights(which, per_user)
            mu, _ = model.encode(seen[a:b], starts[:-1] - a, weights)
            return model.decode(mu).float()  # (U, I)

    return UserScorer(
        user_ids=users,
        item_ids=bundle.item_ids,
        seen_indptr=indptr,
        seen_items=seen,
        raw_scores=scores,
        chunk=VAE_USERS_PER_CHUNK,
        device=where,
    )


def write_part(table: pa.Table, path: Path) -> None:
    """One Parquet part, written under a temporary name and renamed: a reader sees it whole or not."""
    tmp = path.with_name(f".{path.name}.part")
    pq.write_table(table, tmp)
    tmp.rename(path)
