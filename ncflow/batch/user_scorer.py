"""Every user of a model bundle, scored through the project's one full-ranking scorer.

`recommend --all` and evaluation share `models/common/full_rank.rank_users` (chunked users, seen items
masked to -inf, top-k) and the models' own scorers: `NeuMF.score_items` through
`models.ncf.evaluate.ncf_scorer`, Mult-VAE's fold-in through `models.vaecf.evaluate.row_scorer`, and
EASE's x B through `models.ease.model.ease_scorer`.
What is left here is what a batch job adds: which users (all of them, with original ids), which items
are seen, and the rows as an Arrow table.

`UserScorer.top_k(lo, hi, k)` scores users [lo, hi) in chunks of `chunk` users whose boundaries are
multiples of `chunk` from user 0 (`lo` must be one): a user's scores do not depend on how the users
were split among workers, so 1 and 2 workers give identical output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from models.common.full_rank import CSR, ScoreFn, rank_users
from models.common.precision import resolve_precision

VAE_USERS_PER_CHUNK = 4096  # Mult-VAE: one (chunk x items) logits matrix per step, as its evaluation


@dataclass
class UserScorer:
    """Everything one worker needs to score users [0, n_users) of one model."""

    user_ids: np.ndarray  # (U,) original ids (int64, or object holding strings); user u is row u of `seen`
    item_ids: np.ndarray  # (I,) index -> original id (int64, or object holding strings)
    seen: CSR  # row u: user u's items that are never recommended, on the scoring device
    score_fn: ScoreFn  # user indices (a contiguous range) -> (U, items) scores
    chunk: int  # users per forward pass
    device: torch.device

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def max_seen(self) -> tuple[int, int | str]:
        """(the largest seen-item count, the original id of a user who has it)."""
        counts = np.diff(self.seen.indptr_host)
        if not len(counts):
            return 0, -1
        worst = int(np.argmax(counts))
        return int(counts[worst]), self.user_ids[worst : worst + 1].tolist()[0]

    @torch.no_grad()
    def top_k(self, lo: int, hi: int, k: int) -> pa.Table:
        """Rows (user_id, rank, item_id, score) for users [lo, hi): k per user, best first.

        Refuses (ValueError) rather than write padding when a user has fewer than k unseen items;
        the caller checks k up front, so this guards a check that was skipped.
        """
        if lo % self.chunk:
            raise ValueError(f"users must start on a multiple of the chunk ({self.chunk}), got {lo}")
        users = torch.arange(lo, hi, device=self.device)
        items, scores = [np.empty((0, k), np.int64)], [np.empty((0, k), np.float32)]
        for part in rank_users(self.score_fn, users, self.seen, k=k, chunk=self.chunk):
            items.append(part.top_items.cpu().numpy())
            scores.append(part.top_scores.cpu().numpy())
        if any(part.shape[1] < k for part in items[1:]):
            raise ValueError(f"k {k} is above the item count ({self.n_items})")
        top = np.concatenate(items)
        short = np.flatnonzero((top < 0).any(axis=1))
        if len(short):
            user = self.user_ids[lo + short[:1]].tolist()[0]
            raise ValueError(f"user {user} has fewer than {k} unseen items: no padding is written")
        n = hi - lo
        return pa.table(
            {
                "user_id": id_array(np.repeat(self.user_ids[lo:hi], k)),
                "rank": pa.array(np.tile(np.arange(1, k + 1, dtype=np.int32), n)),
                "item_id": id_array(self.item_ids[top.reshape(-1)]),
                "score": pa.array(np.concatenate(scores).reshape(-1)),
            }
        )


def id_array(ids: np.ndarray) -> pa.Array:
    """Original ids as an Arrow column: int64, or strings (an object array of str)."""
    return pa.array(ids, pa.string() if ids.dtype == object else pa.int64())


def id_numpy(ids: list) -> np.ndarray:
    """A list of original ids as the scorer holds them: int64, or an object array of str (never NumPy's
    fixed-width unicode, which `np.asarray` makes of strings and Arrow cannot take)."""
    return pa.array(ids).to_numpy(zero_copy_only=False) if ids else np.empty(0, np.int64)


def pick_device(device: str) -> torch.device:
    """auto: the worker's GPU if it has one (dask-cuda gives each worker one), else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def ncf_user_scorer(bundle_dir: Path, device: str = "auto", precision: str = "auto") -> UserScorer:
    """Every user of an NCF bundle against every item (NeuMF.score_items); seen = its training items."""
    from models.ncf.bundle import load_bundle
    from models.ncf.evaluate import full_rank_chunk, ncf_scorer

    where = pick_device(device)
    bundle = load_bundle(bundle_dir, where)
    model = bundle.model.eval()
    resolved = resolve_precision(precision, where)
    offsets = bundle.seen.offsets.to_numpy().astype(np.int64)
    seen = bundle.seen.values.to_numpy(zero_copy_only=False)
    return UserScorer(
        user_ids=bundle.user_ids,
        item_ids=bundle.item_ids,
        seen=CSR.from_numpy(offsets - offsets[0], seen[offsets[0] : offsets[-1]], where),
        score_fn=ncf_scorer(model, resolved),
        chunk=full_rank_chunk(model, len(bundle.item_ids), where, resolved.autocast_dtype),
        device=where,
    )


def vaecf_user_scorer(
    bundle_dir: Path, data_dir: Path, device: str = "auto", precision: str = "auto"
) -> UserScorer:
    """Every user of the processed dataset (either split; VAE-CF: training and held-out alike),
    folded in from all of their known items (models/common/heldout.known_items), which are also what
    is masked."""
    from models.common.heldout import known_items
    from models.vaecf.bundle import load_bundle
    from models.vaecf.data import CSRTensors
    from models.vaecf.evaluate import as_csr, model_scorer, row_scorer

    where = pick_device(device)
    bundle = load_bundle(bundle_dir, where)
    ids, indptr, items = known_items(Path(data_dir))
    users = ids.to_numpy(zero_copy_only=False)
    known = CSRTensors.from_numpy(indptr, items, users, where)
    model = model_scorer(bundle.model.eval(), resolve_precision(precision, where))
    return UserScorer(
        user_ids=users,
        item_ids=bundle.item_ids,
        seen=as_csr(known),
        score_fn=row_scorer(model, known),
        chunk=VAE_USERS_PER_CHUNK,
        device=where,
    )


def ease_user_scorer(bundle_dir: Path, device: str = "auto") -> UserScorer:
    """Every user of an EASE bundle, folded in from their known items (its seen.parquet): x B."""
    from models.ease.bundle import load_bundle
    from models.ease.model import ease_scorer

    where = pick_device(device)
    bundle = load_bundle(bundle_dir, where)
    offsets = bundle.seen.offsets.to_numpy().astype(np.int64)
    items = bundle.seen.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    seen = CSR.from_numpy(offsets - offsets[0], items, where)
    return UserScorer(
        user_ids=id_numpy(bundle.user_ids),
        item_ids=id_numpy(bundle.item_ids),
        seen=seen,
        score_fn=ease_scorer(bundle.b, seen),
        chunk=VAE_USERS_PER_CHUNK,
        device=where,
    )
