"""How well a model serves next week: the replay's yardstick (bench/replay.py), one protocol for every model.

For week w+1 of a log: the temporal split of the log up to the end of week w+1, cut at its start
(ncflow/data/temporal_split.py). Its test users are everyone active that week who was seen before;
their targets are every item they took for the first time that week. Each model scores the split's
whole catalogue for each test user, as a service would answer:
- a user the model never saw gets the fallback, popularity over the 4 weeks before the cutoff (what a
  service shows a user its model does not know);
- an item the model never saw cannot be recommended by it (scored -inf: a miss if it is a target);
- every item the user had before the cutoff is masked.
Full-ranking HR@10, NDCG@10 and Recall@20 then compare models trained at different times fairly:
the frozen first model pays for the users and items it never learnt, as it would in production.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from configs import Columns, PreprocessConfig
from models.common.full_rank import CSR, full_rank_metrics
from models.common.parquet import read_table
from models.common.precision import resolve_precision
from models.ncf.bundle import load_bundle
from models.ncf.data import load_ncf_data
from models.ncf.evaluate import ncf_scorer, seen_items
from ncflow.data.preprocess import preprocess

COLUMNS = Columns(user="user", item="item", rating="rating", timestamp="ts")
POPULAR_WEEKS = 4


def week_split(log: Path, start: dt.date, week: int, out_root: Path) -> Path:
    """The temporal split testing week `week` (0-based from `start`) on the log up to its end."""
    cutoff = start + dt.timedelta(days=7 * week)
    config = PreprocessConfig(
        columns=COLUMNS,
        holdout="temporal",
        cutoff=cutoff,
        horizon_days=7,
        until=cutoff + dt.timedelta(days=7),
    )
    return preprocess("replay-eval", log, out_root, config)


def popularity(log_table: pa.Table, cutoff: dt.date, items: np.ndarray) -> torch.Tensor:
    """Interactions per item of `items` (original ids) in the POPULAR_WEEKS weeks before `cutoff`."""
    end = int(dt.datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=dt.UTC).timestamp())
    recent = log_table.filter(
        pc.and_(
            pc.greater_equal(log_table["ts"], end - POPULAR_WEEKS * 7 * 86_400), pc.less(log_table["ts"], end)
        )
    )
    counts = dict(zip(*np.unique(recent["item"].to_numpy(), return_counts=True)))
    return torch.tensor([float(counts.get(i, 0)) for i in items.tolist()])


def served_scores(
    bundle_dir: Path | None, user_ids: np.ndarray, item_ids: np.ndarray, fallback: torch.Tensor
):
    """users (split indices) -> scores over the split's catalogue, as the model (or the fallback) serves them."""
    if bundle_dir is None:
        return lambda users: fallback.expand(len(users), len(item_ids)).clone()
    bundle = load_bundle(bundle_dir, "cpu")
    score = ncf_scorer(bundle.model.eval(), resolve_precision("fp32", torch.device("cpu")))
    model_item = {item: i for i, item in enumerate(bundle.item_ids.tolist())}
    columns = torch.tensor([model_item.get(i, -1) for i in item_ids.tolist()])
    known_items = columns >= 0
    model_user = torch.tensor([bundle.user_index.get(u, -1) for u in user_ids.tolist()])

    def scores(users: torch.Tensor) -> torch.Tensor:
        out = fallback.expand(len(users), len(item_ids)).clone()
        who = model_user[users]
        known = who >= 0
        if known.any():
            own = score(who[known])
            rows = torch.full((int(known.sum()), len(item_ids)), -torch.inf)
            rows[:, known_items] = own[:, columns[known_items]].float()
            out[known] = rows
        return out

    return scores


def evaluate_week(split: Path, models: dict[str, Path | None], log_table: pa.Table, cutoff: dt.date) -> dict:
    """{model name: full-ranking metrics} on `split`'s test week (None: popularity only)."""
    data = load_ncf_data(split, torch.device("cpu"))
    user_ids = read_table(split / "users.parquet").column("id").to_numpy()
    item_ids = read_table(split / "items.parquet").column("id").to_numpy()
    fallback = popularity(log_table, cutoff, item_ids)
    seen = seen_items(data, "test")
    users = data.test_user.long()
    indptr, items = data.targets
    # The test users the first (frozen) model knows: there, both models answer from what they learnt.
    frozen = models.get("frozen")
    known = set(load_bundle(frozen, "cpu").user_index) if frozen else set()
    subset = np.array([u in known for u in user_ids[users.numpy()].tolist()], bool)
    out = {}
    for name, bundle in models.items():
        score = served_scores(bundle, user_ids, item_ids, fallback)
        for suffix, rows in (("", np.ones(len(subset), bool)), ("_on_frozen_users", subset)):
            picked = np.flatnonzero(rows)
            counts = np.diff(indptr)[picked]
            flat = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - indptr[picked], counts)
            targets = CSR.from_numpy(np.concatenate([[0], np.cumsum(counts)]), items[flat])
            metrics = full_rank_metrics(score, users[picked], seen, targets)
            out[name + suffix] = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    counts = data.manifest["counts"]
    out["counts"] = {
        k: counts[k] for k in ("test_users", "cold_start_users", "cold_start_items", "window_rows")
    }
    return out
