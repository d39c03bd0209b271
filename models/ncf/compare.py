"""The champion rule's fair comparison: a new NeuMF (the challenger) and the registry's champion scored on
the same held-out data, which neither trained on.

Why not re-score the champion on the challenger's test set as it is: retraining runs on newer data, and
a held-out item of the new split may be one the champion trained on (its data ended later in the
user's history, or it kept the validation item in training). Scored on it, the champion looks better
than it is and a better challenger is refused. So, on the challenger's test rows (leave-latest-out or
the temporal window):
- only users both models know, and target items both models know, are scored (a model cannot rank an
  id it has never seen); the others are counted, and the card says so;
- targets the champion trained on (the pair is in its training data) are left out, for both;
- each user's seen items are those of either model (the challenger's training and validation items,
  the champion's training items), masked for both: an item one model saw is no hit for the other;
- ranking is over the catalogue both know, full ranking: HR@10, NDCG@10, Recall@20.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from models.common.full_rank import CSR, full_rank_metrics
from models.common.precision import resolve_precision
from models.ncf.bundle import Bundle, load_bundle
from models.ncf.data import load_ncf_data
from models.ncf.evaluate import full_rank_chunk, ncf_scorer, seen_items

METRIC = "full_hr@10"  # what decides: the whole catalogue, not 100 sampled negatives


@dataclass(frozen=True)
class Comparison:
    metric: str
    challenger: float
    champion: float
    users: int  # test users both were scored on
    test_users: int  # the challenger's test users
    unknown_users: int  # test users the champion never saw
    unknown_items: int  # distinct target items outside the catalogue both know
    trained_on: int  # held-out rows left out because the champion trained on them (-1: unknown)
    scores: dict  # {"challenger": {metric: value}, "champion": {...}}
    trained_on_what: str = "held-out items"  # what `trained_on` counts (Mult-VAE: test users)
    rival: str = "the champion"  # who the challenger meets (ncflow/best_compare.py: the best)

    def describe(self) -> str:
        """Which held-out data both were scored on, in words (for the reason and the card)."""
        left_out = [
            f"{self.unknown_users:,} users" if self.unknown_users else "",
            f"{self.unknown_items:,} items" if self.unknown_items else "",
        ]
        never = " and ".join(p for p in left_out if p)
        parts = [f"{self.users:,} of {self.test_users:,} test users"]
        if never:
            parts.append(f"{self.rival} never saw {never}")
        if self.trained_on > 0:
            parts.append(f"{self.trained_on:,} {self.trained_on_what} it trained on left out")
        elif self.trained_on < 0:
            parts.append(f"what {self.rival} trained on is not recorded, so none could be left out")
        return "the same held-out data (" + "; ".join(parts) + ")"

    def as_record(self) -> dict:
        return asdict(self)


def compare_bundles(
    challenger_dir: Path, champion_dir: Path, data_dir: Path, device: str = "cpu"
) -> Comparison:
    where = torch.device(device)
    challenger, champion = load_bundle(challenger_dir, where), load_bundle(champion_dir, where)
    data = load_ncf_data(data_dir, where)
    test_user = data.test_user.long().cpu().numpy()
    if data.targets is not None:
        indptr, items = data.targets
    else:
        indptr, items = np.arange(len(test_user) + 1), data.candidates[:, 0].long().cpu().numpy()

    # The catalogue both know, in the challenger's item order; where each model's items sit in it.
    champion_item = {item: i for i, item in enumerate(champion.item_ids.tolist())}
    to_champion = np.array([champion_item.get(item, -1) for item in challenger.item_ids.tolist()], np.int64)
    shared = np.flatnonzero(to_champion >= 0)
    position = np.full(len(to_champion), -1, np.int64)
    position[shared] = np.arange(len(shared))
    champion_position = np.full(len(champion.item_ids), -1, np.int64)
    champion_position[to_champion[shared]] = np.arange(len(shared))

    champion_user = np.array(
        [champion.user_index.get(u, -1) for u in challenger.user_ids[test_user].tolist()], np.int64
    )
    row_of = np.repeat(np.arange(len(test_user)), np.diff(indptr))  # the test row of each target
    target_champion_user = champion_user[row_of]
    known = (target_champion_user >= 0) & (position[items] >= 0)
    trained = np.zeros(len(items), bool)
    trained[known] = champion_trained(champion, target_champion_user[known], to_champion[items[known]])
    keep = known & ~trained
    rows = np.unique(row_of[keep])  # test rows with a target left to score
    remap = np.full(len(test_user), -1, np.int64)
    remap[rows] = np.arange(len(rows))
    targets = CSR.from_pairs(remap[row_of[keep]], position[items[keep]], len(rows), where)
    seen = union_seen(
        data, challenger, champion, test_user[rows], champion_user[rows], position, champion_position
    )

    scores = {}
    for name, bundle, users, columns in (
        ("challenger", challenger, test_user[rows], shared),
        ("champion", champion, champion_user[rows], to_champion[shared]),
    ):
        scores[name] = {
            k: v
            for k, v in shared_scores(bundle, users, columns, seen, targets, where).items()
            if k != "full_users"
        }
    unknown_items = len(np.unique(items[(target_champion_user >= 0) & (position[items] < 0)]))
    return Comparison(
        metric=METRIC, challenger=scores["challenger"][METRIC], champion=scores["champion"][METRIC],
        users=len(rows), test_users=len(test_user), unknown_users=int((champion_user < 0).sum()),
        unknown_items=unknown_items, trained_on=int(trained.sum()), scores=scores,
    )  # fmt: skip


def champion_trained(champion: Bundle, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each (champion user, champion item) pair is in the champion's training data."""
    offsets = champion.seen.offsets.to_numpy().astype(np.int64)
    values = champion.seen.values.to_numpy(zero_copy_only=False).astype(np.int64)
    counts = np.diff(offsets)
    keys = (
        np.repeat(np.arange(len(counts)), counts) * len(champion.item_ids) + values[offsets[0] : offsets[-1]]
    )
    return np.isin(users * len(champion.item_ids) + items, keys)


def union_seen(data, challenger, champion, users, champion_users, position, champion_position) -> CSR:
    """Each scored user's items seen by either model, in the shared catalogue's positions (duplicates
    are harmless: an item masked twice is masked)."""
    test_seen = seen_items(data, "test")  # the challenger's training (and validation) items
    starts, ends = test_seen.indptr_host[users], test_seen.indptr_host[users + 1]
    counts = ends - starts
    mine_rows = np.repeat(np.arange(len(users)), counts)
    picks = np.arange(counts.sum()) - np.repeat(
        np.cumsum(counts) - counts - starts, counts
    )  # each row's range
    mine = position[test_seen.indices.cpu().numpy()[picks]]
    theirs_lists = champion.seen.take(pa.array(champion_users))
    theirs_rows = pc.list_parent_indices(theirs_lists).to_numpy()
    theirs = champion_position[pc.list_flatten(theirs_lists).to_numpy(zero_copy_only=False).astype(np.int64)]
    rows = np.concatenate([mine_rows, theirs_rows]).astype(np.int64)
    items = np.concatenate([mine, theirs])
    keep = items >= 0
    return CSR.from_pairs(rows[keep], items[keep], len(users), test_seen.indices.device)


@torch.no_grad()
def shared_scores(
    bundle: Bundle, users: np.ndarray, columns: np.ndarray, seen: CSR, targets: CSR, device: torch.device
) -> dict[str, float]:
    """Full-ranking metrics of `bundle` for `users` (its own indices) over its items `columns`."""
    model = bundle.model.eval()
    precision = resolve_precision(bundle.config["train"]["precision"], device)
    score_all = ncf_scorer(model, precision)
    users_t = torch.as_tensor(users, device=device)
    columns_t = torch.as_tensor(columns, device=device)

    def score(rows: torch.Tensor) -> torch.Tensor:
        return score_all(users_t[rows])[:, columns_t]

    chunk = full_rank_chunk(model, len(bundle.item_ids), device, precision.autocast_dtype)
    return full_rank_metrics(score, torch.arange(len(users), device=device), seen, targets, chunk=chunk)
