"""Held-out evaluation of VAE-CF: fold-in rows in, NDCG@100 / Recall@20 / Recall@50 out.

The trainer and a saved bundle use the same function, and an item-popularity baseline runs through
it too, so the two are scored identically:

    python -m models.vaecf.evaluate --bundle OUT/bundle --data DATA_DIR            # test users
    python -m models.vaecf.evaluate --bundle OUT/bundle --data DATA_DIR --split valid
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from models.common.distributed import all_reduce_sum
from models.common.full_rank import CSR, full_rank_metrics
from models.common.full_rank import ScoreFn as RowScoreFn
from models.common.precision import Precision, resolve_precision
from models.vaecf.data import CSRTensors, SparseBatch, load_vae_data, row_slice
from models.vaecf.metrics import NDCG_K, RECALL_KS, mask_foldin, ranking_metrics
from models.vaecf.model import MultVAE

ScoreFn = Callable[[SparseBatch], Tensor]  # fold-in rows -> scores (U, items)
METRICS = (f"ndcg@{NDCG_K}", *(f"recall@{k}" for k in RECALL_KS))


def model_scorer(model: MultVAE, precision: Precision) -> ScoreFn:
    """Scores of a model in eval mode: no input dropout, z = mu."""

    def score(batch: SparseBatch) -> Tensor:
        with precision.autocast(batch.indices.device):
            weights = model.input_weights(batch.rows, batch.counts)
            mu, _ = model.encode(batch.indices, batch.offsets, weights)
            logits = model.decode(mu)
        return logits.float()

    return score


def popularity_scorer(train: CSRTensors, n_items: int) -> ScoreFn:
    """The baseline: every user gets the items most often liked by the training users."""
    popularity = torch.bincount(train.indices, minlength=n_items).float()  # (items,)
    return lambda batch: popularity.expand(batch.size, n_items).clone()


@torch.no_grad()
def evaluate(
    score_fn: ScoreFn, foldin: CSRTensors, target: CSRTensors, *, rank: int = 0, world_size: int = 1,
    chunk: int = 4096, seen: CSRTensors | None = None,
) -> dict[str, float]:  # fmt: skip
    """Mean metrics over all held-out users; each rank scores a contiguous share, sums are all-reduced.
    `seen` (default: the fold-in items) are masked."""
    seen = foldin if seen is None else seen
    n_users = foldin.rows
    lo, hi = n_users * rank // world_size, n_users * (rank + 1) // world_size
    sums = torch.zeros(len(METRICS), dtype=torch.float64, device=foldin.indices.device)
    for start in range(lo, hi, chunk):
        end = min(start + chunk, hi)
        given, wanted, known = (
            row_slice(foldin, start, end),
            row_slice(target, start, end),
            row_slice(seen, start, end),
        )
        scores = mask_foldin(score_fn(given), known.rows, known.indices)  # (U, items)
        per_user = ranking_metrics(scores, wanted.rows, wanted.indices)
        sums += torch.stack([per_user[name].sum() for name in METRICS]).double()
    all_reduce_sum(sums)
    return dict(zip(METRICS, (sums / max(1, n_users)).tolist()))


def as_csr(rows: CSRTensors) -> CSR:
    """The same rows as the full-ranking scorer's CSR (no copy)."""
    return CSR(rows.indptr, rows.indices, rows.indptr_host)


def row_scorer(score_fn: ScoreFn, foldin: CSRTensors) -> RowScoreFn:
    """`score_fn` as models/common/full_rank.py's scorer: rank_users' users are rows of `foldin`, each
    folded in from its own items. Evaluation and `recommend --all` both score through this."""

    def score(rows: Tensor) -> Tensor:  # a contiguous, ascending range of rows (rank_users' chunks)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo != len(rows):
            raise ValueError(f"rows must be a contiguous ascending range, got {len(rows)} in [{lo}, {hi})")
        return score_fn(row_slice(foldin, lo, hi))

    return score


def full_rank(
    score_fn: ScoreFn,
    foldin: CSRTensors,
    target: CSRTensors,
    chunk: int = 4096,
    seen: CSRTensors | None = None,
) -> dict[str, float]:
    """Full-ranking HR@10, NDCG@10, Recall@20 (models/common/full_rank.py) of held-out users: each
    user's fold-in items (or `seen`) are the seen ones, its target items the held-out ones."""
    users = torch.arange(foldin.rows, device=foldin.indices.device)
    masked = as_csr(foldin if seen is None else seen)
    return full_rank_metrics(row_scorer(score_fn, foldin), users, masked, as_csr(target), chunk=chunk)


def evaluate_bundle(bundle_dir: Path, data_dir: Path, split: str = "test", device: str = "cpu") -> dict:
    """A saved bundle and the popularity baseline on a processed dataset's held-out users (either
    split: models/vaecf/data.py), the model's validation scores beside (`valid`), and the baselines
    fitted on the same training data (`baselines`: item popularity and EASE, models/ease/evaluate.py)."""
    from models.ease.evaluate import baseline_rows
    from models.vaecf.bundle import load_bundle

    where = torch.device(device)
    bundle = load_bundle(bundle_dir, where)
    data = load_vae_data(data_dir, where)
    if bundle.data.get("source", {}).get("md5") != data.manifest.get("source", {}).get("md5"):
        raise SystemExit(f"error: {bundle_dir} was trained on other data than {data_dir}")
    precision = resolve_precision(bundle.config["train"]["precision"] if device != "cpu" else "fp32", where)
    scorer, popularity = (
        model_scorer(bundle.model.eval(), precision),
        popularity_scorer(data.train, data.n_items),
    )

    def scores(score_fn: ScoreFn, name: str) -> dict[str, float]:
        (foldin, target), seen = data.heldout(name), data.masked(name)
        return evaluate(score_fn, foldin, target, seen=seen) | full_rank(score_fn, foldin, target, seen=seen)

    return {
        "split": split,
        "users": data.heldout(split)[0].rows,
        "items": data.n_items,
        "mult_vae": scores(scorer, split),
        "valid": scores(scorer, "valid"),
        "popularity": scores(popularity, split),
        "baselines": baseline_rows(data_dir, where) if split == "test" else {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.vaecf.evaluate")
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate_bundle(args.bundle, args.data, args.split, args.device), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
