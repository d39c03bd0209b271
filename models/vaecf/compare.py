"""The champion rule's fair comparison for Mult-VAE: a new model (the challenger) and the registry's
champion scored on the challenger's held-out test users, which neither trained on.

Why: VAE-CF holds out users, and a retrained model's split is drawn on new data, so some of its test
users may have been the champion's training users; scored on them, the champion looks better than it
is. So, on the challenger's test users (fold-in items in, target items out):
- users the champion trained on (its bundle's train_users.parquet) are left out, for both;
- only items both models know are used, as fold-in input, as targets and as the ranked catalogue; a
  user left without fold-in items or targets is not scored;
- both fold in the same items and are scored with the same NDCG@100 (models/vaecf/metrics.py).
A champion from before bundles listed their training users cannot be checked for that overlap: its
users are all taken, and `trained_on` says -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from models.common.precision import resolve_precision
from models.ncf.compare import Comparison
from models.vaecf.bundle import Bundle, load_bundle
from models.vaecf.data import CSRTensors, SparseBatch, load_vae_data
from models.vaecf.evaluate import evaluate, model_scorer

METRIC = "ndcg@100"


def compare_bundles(
    challenger_dir: Path, champion_dir: Path, data_dir: Path, device: str = "cpu"
) -> Comparison:
    where = torch.device(device)
    challenger, champion = load_bundle(challenger_dir, where), load_bundle(champion_dir, where)
    foldin, target = load_vae_data(data_dir, where).heldout("test")
    users = foldin.user_ids.tolist()
    trained = champion_users(champion_dir)
    fresh = np.array([trained is None or u not in trained for u in users], bool)

    to_champion = np.array([champion.item_index.get(i, -1) for i in challenger.item_ids.tolist()], np.int64)
    shared = np.flatnonzero(to_champion >= 0)  # the catalogue both know, in the challenger's order
    position = np.full(len(to_champion), -1, np.int64)
    position[shared] = np.arange(len(shared))
    given, given_rows = shared_rows(foldin, position, fresh, where)
    wanted, wanted_rows = shared_rows(target, position, fresh, where)
    keep = np.intersect1d(given_rows, wanted_rows)  # users with fold-in items and targets both known
    given, wanted = take(given, given_rows, keep, where), take(wanted, wanted_rows, keep, where)

    scores = {
        "challenger": evaluate(shared_scorer(challenger, torch.as_tensor(shared), device), given, wanted),
        "champion": evaluate(
            shared_scorer(champion, torch.as_tensor(to_champion[shared]), device), given, wanted
        ),
    }
    target_items = target.indices.cpu().numpy()
    return Comparison(
        metric=METRIC, challenger=scores["challenger"][METRIC], champion=scores["champion"][METRIC],
        users=len(keep), test_users=len(users), unknown_users=0,
        unknown_items=len(np.unique(target_items[position[target_items] < 0])),
        trained_on=-1 if trained is None else int((~fresh).sum()), scores=scores, trained_on_what="test users",
    )  # fmt: skip


def champion_users(bundle_dir: Path) -> set | None:
    """The champion's training users (None for a bundle written before they were recorded)."""
    path = Path(bundle_dir) / "train_users.parquet"
    return set(pq.read_table(path).column("id").to_pylist()) if path.is_file() else None


def shared_rows(
    csr: CSRTensors, position: np.ndarray, fresh: np.ndarray, device
) -> tuple[CSRTensors, np.ndarray]:
    """The rows of `csr` that are `fresh`, their items moved to shared positions (unknown ones dropped);
    with the original row number of each row that kept an item."""
    counts = np.diff(csr.indptr_host)
    row = np.repeat(np.arange(len(counts)), counts)
    items = position[csr.indices.cpu().numpy()]
    keep = (items >= 0) & fresh[row]
    rows, per_row = np.unique(row[keep], return_counts=True)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    return CSRTensors.from_numpy(indptr, items[keep], csr.user_ids[rows], device), rows


def take(csr: CSRTensors, rows: np.ndarray, wanted: np.ndarray, device) -> CSRTensors:
    """Of `csr` (whose row r is original row rows[r]), the rows for the original rows `wanted`."""
    picks = np.searchsorted(rows, wanted)
    starts, ends = csr.indptr_host[picks], csr.indptr_host[picks + 1]
    counts = ends - starts
    flat = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return CSRTensors.from_numpy(indptr, csr.indices.cpu().numpy()[flat], csr.user_ids[picks], device)


def shared_scorer(bundle: Bundle, columns: torch.Tensor, device: str):
    """Fold-in rows in shared positions -> scores over the shared catalogue, through `bundle`'s model."""
    where = torch.device(device)
    precision = resolve_precision(bundle.config["train"]["precision"] if device != "cpu" else "fp32", where)
    score = model_scorer(bundle.model.eval(), precision)
    columns = columns.to(where)

    def shared(batch: SparseBatch) -> torch.Tensor:
        own = SparseBatch(columns[batch.indices], batch.offsets, batch.rows, batch.counts)
        return score(own)[:, columns]

    return shared
