"""The `best` alias's fair comparison across families: the newcomer and the current best, of any family
(NeuMF, EASE, Mult-VAE on the NCF split), scored on the newcomer's held-out data, as the champion rule
scores a family's own models (models/ncf/compare.py, models/vaecf/compare.py).

Why not score the best on the newcomer's test set as it is: its indices are another split's (the
scorers fail), and a held-out item of the new split may be one the best trained on. So, on the
newcomer's test rows (each user's training items as input, the held-out items as targets):
- only users both models can score (NeuMF: a user it has an embedding for; EASE, Mult-VAE: a user
  with an input item it knows) and targets both know are scored, over the catalogue both know;
- targets the best trained on are left out, for both (NeuMF and EASE bundles list each user's items;
  a Mult-VAE bundle does not, and the comparison says so);
- each user's items seen by either model are masked for both;
- both are scored alike: full-ranking NDCG@10 (the alias's metric), HR@10 and Recall@20.

    result = compare_across(("ease", new_dir), ("ncf", best_dir), data_dir)   # models.ncf.compare.Comparison
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.common.full_rank import CSR, ScoreFn, full_rank_metrics
from models.common.heldout import dense_rows, load_splits
from models.common.parquet import read_table
from models.common.precision import resolve_precision
from models.ncf.compare import Comparison
from ncflow.specs import spec

METRIC = "full_ndcg@10"
USERS_PER_CHUNK = 1024  # fold-in models: one (chunk x items) score matrix per step


@dataclass(frozen=True)
class Trained:
    """What a model trained on: row index[user id] of `items` holds that user's item indices."""

    index: dict  # original user id -> row
    items: CSR  # on the CPU

    @classmethod
    def from_lists(cls, user_ids: list, lists) -> Trained:
        """From a bundle's seen.parquet column (a ListArray, row u: user u's item indices)."""
        offsets = lists.offsets.to_numpy().astype(np.int64)
        values = lists.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
        return cls({u: i for i, u in enumerate(user_ids)}, CSR.from_numpy(offsets - offsets[0], values))

    def pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `rows`, item) of every item of rows `rows` (-1: a user it never saw, skipped)."""
        rows = np.asarray(rows, np.int64)
        known = np.flatnonzero(rows >= 0)
        part = _map_rows(self.items, rows[known], None, torch.device("cpu"))
        return known[np.repeat(np.arange(len(known)), np.diff(part.indptr_host))], part.indices.numpy()


@dataclass(frozen=True)
class Scorable:
    """One bundle, as the comparison needs it, in its own indices."""

    item_ids: list  # index -> original item id
    user_index: dict | None  # NeuMF: original user id -> index (only these can be scored); None: fold-in
    trained: Trained | None  # None: not recorded
    scorer: Callable[[np.ndarray, CSR], ScoreFn]  # (own user per row, input items per row) -> score_fn
    chunk: int


def load_scorable(model: str, bundle_dir: Path, device: torch.device) -> Scorable:
    """A registered bundle of `model` (a registry name: ncf, ease, vae-cf-ncf) as a Scorable."""
    package = spec(model).package
    if package == "ncf":
        return _ncf(bundle_dir, device)
    if package == "ease":
        return _ease(bundle_dir, device)
    return _vaecf(bundle_dir, device)


def _ncf(bundle_dir: Path, device: torch.device) -> Scorable:
    from models.ncf.bundle import load_bundle
    from models.ncf.evaluate import full_rank_chunk, ncf_scorer

    bundle = load_bundle(bundle_dir, device)
    precision = resolve_precision("auto", device)
    score_all = ncf_scorer(bundle.model.eval(), precision)
    users = bundle.user_ids.tolist()

    def scorer(own_users: np.ndarray, inputs: CSR) -> ScoreFn:  # NeuMF scores its users; inputs unused
        index = torch.as_tensor(own_users, device=device)
        return lambda rows: score_all(index[rows]).float()

    chunk = full_rank_chunk(bundle.model, len(bundle.item_ids), device, precision.autocast_dtype)
    return Scorable(
        bundle.item_ids.tolist(), bundle.user_index, Trained.from_lists(users, bundle.seen), scorer, chunk
    )


def _ease(bundle_dir: Path, device: torch.device) -> Scorable:
    from models.ease.bundle import load_bundle

    bundle = load_bundle(bundle_dir, device)

    def scorer(own_users: np.ndarray, inputs: CSR) -> ScoreFn:
        return lambda rows: dense_rows(inputs, rows, bundle.b.shape[0]) @ bundle.b

    # seen.parquet: each user's known items (training, validation and test): all are left out
    return Scorable(
        bundle.item_ids, None, Trained.from_lists(bundle.user_ids, bundle.seen), scorer, USERS_PER_CHUNK
    )


def _vaecf(bundle_dir: Path, device: torch.device) -> Scorable:
    from models.vaecf.bundle import load_bundle
    from models.vaecf.data import CSRTensors
    from models.vaecf.evaluate import model_scorer, row_scorer

    bundle = load_bundle(bundle_dir, device)
    score = model_scorer(bundle.model.eval(), resolve_precision("auto", device))

    def scorer(own_users: np.ndarray, inputs: CSR) -> ScoreFn:
        rows = CSRTensors.from_numpy(inputs.indptr_host, inputs.indices.cpu().numpy(), own_users, device)
        return row_scorer(score, rows)

    return Scorable(bundle.item_ids.tolist(), None, None, scorer, USERS_PER_CHUNK)


def _map_rows(csr: CSR, rows: np.ndarray, to: np.ndarray | None, device: torch.device) -> CSR:
    """Rows `rows` of `csr`, its items moved by `to` (-1: dropped; None: kept as they are)."""
    indptr, items = csr.indptr_host, csr.indices.cpu().numpy()
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    local = np.repeat(np.arange(len(rows)), counts)
    picks = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - starts, counts)
    moved = items[picks] if to is None else to[items[picks]]
    keep = moved >= 0
    return CSR.from_pairs(local[keep], moved[keep], len(rows), device)


def training_pairs(data_dir: Path) -> Trained:
    """What a model trained on an NCF split trained on: its train.parquet (its items are indexed as the
    bundles trained on it index them: both copy its items.parquet)."""
    users = read_table(data_dir / "users.parquet").column("id").to_pylist()
    train = read_table(data_dir / "train.parquet", columns=["user", "item"])
    user, item = (train.column(c).to_numpy().astype(np.int64) for c in ("user", "item"))
    return Trained({u: i for i, u in enumerate(users)}, CSR.from_pairs(user, item, len(users), "cpu"))


def compare_across(
    newcomer: tuple[str, Path],
    incumbent: tuple[str, Path],
    data_dir: Path,
    device: str = "cpu",
    incumbent_data: Path | None = None,
) -> Comparison:
    """Both (registry name, bundle folder) scored on `data_dir`'s (the newcomer's) test rows, on the users
    and items both know; `challenger` is the newcomer's METRIC, `champion` the incumbent's.

    What the incumbent trained on comes from `incumbent_data` (the NCF split it was registered on)
    where that folder is still there; else from its bundle: NeuMF's training items; EASE's known items
    (its held-out ones too, so more is left out than it trained on); Mult-VAE's are not recorded."""
    where = torch.device(device)
    data_dir = Path(data_dir)
    test = load_splits(data_dir, where).test
    if test.users is None:
        raise ValueError(f"{data_dir} is not an NCF split: the best is decided on one")
    user_ids = read_table(data_dir / "users.parquet").column("id").to_pylist()
    item_ids = read_table(data_dir / "items.parquet").column("id").to_pylist()
    new, old = load_scorable(*newcomer, where), load_scorable(*incumbent, where)
    if incumbent_data is not None and (Path(incumbent_data) / "train.parquet").is_file():
        old = dataclasses.replace(old, trained=training_pairs(Path(incumbent_data)))

    def own(model: Scorable) -> np.ndarray:  # data item index -> the model's index (-1: unknown)
        index = {item: i for i, item in enumerate(model.item_ids)}
        return np.array([index.get(item, -1) for item in item_ids], np.int64)

    to_new, to_old = own(new), own(old)
    shared = np.flatnonzero((to_new >= 0) & (to_old >= 0))  # the catalogue both know, in data order
    position = np.full(len(item_ids), -1, np.int64)
    position[shared] = np.arange(len(shared))

    who = [user_ids[u] for u in test.users.cpu().numpy().tolist()]  # original id of each test row
    inputs = test.inputs.indices.cpu().numpy()
    input_row = np.repeat(np.arange(len(who)), np.diff(test.inputs.indptr_host))

    def scorable_rows(model: Scorable, to_own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whether each test row can be scored, its user's own index or -1)."""
        if model.user_index is not None:
            users = np.array([model.user_index.get(u, -1) for u in who], np.int64)
            return users >= 0, users
        has_input = np.zeros(len(who), bool)
        has_input[input_row[to_own[inputs] >= 0]] = True
        return has_input, np.full(len(who), -1, np.int64)

    new_ok, new_users = scorable_rows(new, to_new)
    old_ok, old_users = scorable_rows(old, to_old)
    targets = test.targets.indices.cpu().numpy()
    target_row = np.repeat(np.arange(len(who)), np.diff(test.targets.indptr_host))
    keep = new_ok[target_row] & old_ok[target_row] & (position[targets] >= 0)
    trained, old_row = np.zeros(len(targets), bool), None
    if old.trained is not None:
        old_row = np.array([old.trained.index.get(u, -1) for u in who], np.int64)
        rows_at, items_at = old.trained.pairs(old_row)
        width = len(old.item_ids)
        trained = keep & np.isin(target_row * width + to_old[targets], rows_at * width + items_at)
    scored = keep & ~trained
    rows = np.unique(target_row[scored])  # test rows with a target left to score
    remap = np.full(len(who), -1, np.int64)
    remap[rows] = np.arange(len(rows))
    wanted = CSR.from_pairs(remap[target_row[scored]], position[targets[scored]], len(rows), where)
    seen = _union_seen(
        test.seen, rows, old, None if old_row is None else old_row[rows], to_old, position, where
    )

    scores = {}
    for name, model, to_own, users in (
        ("challenger", new, to_new, new_users),
        ("champion", old, to_old, old_users),
    ):
        columns = torch.as_tensor(to_own[shared], device=where)
        score = model.scorer(users[rows], _map_rows(test.inputs, rows, to_own, where))
        metrics = full_rank_metrics(
            lambda r, score=score, columns=columns: score(r)[:, columns],
            torch.arange(len(rows), device=where), seen, wanted, chunk=model.chunk,
        )  # fmt: skip
        scores[name] = {k: v for k, v in metrics.items() if k != "full_users"}
    both = new_ok & old_ok
    return Comparison(
        metric=METRIC, challenger=scores["challenger"][METRIC], champion=scores["champion"][METRIC],
        users=len(rows), test_users=len(who), unknown_users=int((~both).sum()),
        unknown_items=len(np.unique(targets[both[target_row] & (position[targets] < 0)])),
        trained_on=-1 if old.trained is None else int(trained.sum()), scores=scores, rival="the best",
    )  # fmt: skip


def _union_seen(
    seen: CSR, rows: np.ndarray, old: Scorable, old_rows: np.ndarray | None, to_old: np.ndarray,
    position: np.ndarray, device: torch.device,
) -> CSR:  # fmt: skip
    """Each scored row's items seen in the newcomer's data (training, validation) or by the incumbent
    (its rows `old_rows`), in the shared catalogue's positions (an item one model saw is no hit for the
    other)."""
    mine = _map_rows(seen, rows, position, torch.device("cpu"))
    row_parts = [np.repeat(np.arange(len(rows)), np.diff(mine.indptr_host))]
    item_parts = [mine.indices.numpy()]
    if old.trained is not None and old_rows is not None:
        old_position = np.full(len(old.item_ids), -1, np.int64)
        old_position[to_old[to_old >= 0]] = position[to_old >= 0]
        at, items = old.trained.pairs(old_rows)
        moved = old_position[items]
        row_parts.append(at[moved >= 0])
        item_parts.append(moved[moved >= 0])
    return CSR.from_pairs(np.concatenate(row_parts), np.concatenate(item_parts), len(rows), device)
