"""Scoring a fold-in model (EASE, or item popularity) on either protocol's held-out users, with the
metrics the project reports for that protocol, from the functions the other models use:
- NCF split: sampled HR@10 / NDCG@10 (target against its 100 negatives: models/ncf/metrics.py) and
  full-ranking HR@10 / NDCG@10 / Recall@20 (models/common/full_rank.py);
- VAE-CF split: NDCG@100, Recall@20, Recall@50 (models/vaecf/metrics.py) and the same full ranking.
Choosing lambda on validation is here too, so the EASE trainer and the baseline rows on the other
models' cards pick it the same way.

    python -m models.ease.evaluate --bundle OUT/bundle --data DATA_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.common.full_rank import CSR, METRICS, ScoreFn, gather_rows, metric_sums, rank_chunk
from models.common.heldout import Heldout, Splits, load_splits
from models.ease.model import ease_scorer, fit, gram, objective
from models.ncf.metrics import hit_ndcg
from models.vaecf.metrics import ranking_metrics
from ncflow.atomic import atomic_file

# What picks lambda on validation, per protocol: full-ranking NDCG@10 on the NCF split (every item
# ranked, and smoother than HR@10 over a few hundred users), NDCG@100 on the VAE-CF split (the paper's).
SELECT = {"ncf": "full_ndcg@10", "vaecf": "ndcg@100"}
EVAL_USERS_PER_CHUNK = 1024
# The baseline rows fit EASE on every evaluation; above this many items its three items x items
# matrices (10.8 GB in fp32 at 30k) are left out and the card shows popularity alone.
BASELINE_MAX_ITEMS = 30_000
BASELINE_VERSION = 1  # bump when baseline_rows' output for the same data and settings changes


def popularity(train: CSR, n_items: int) -> ScoreFn:
    """The baseline: every user gets items by their count among the training interactions."""
    counts = torch.bincount(train.indices, minlength=n_items).float()
    return lambda users: counts.expand(len(users), n_items).clone()


@torch.no_grad()
def heldout_metrics(
    score_fn: ScoreFn, split: Heldout, protocol: str, chunk: int = EVAL_USERS_PER_CHUNK
) -> dict[str, float]:
    """The protocol's metrics of `score_fn` (row indices of `split` -> (U, items) scores), each chunk of
    users scored once for all of them."""
    users = torch.arange(split.rows, device=split.inputs.indices.device)
    sums: dict[str, float] = {}
    full, counted = torch.zeros(len(METRICS), dtype=torch.float64, device=users.device), 0
    for lo in range(0, split.rows, chunk):
        rows = users[lo : lo + chunk]
        scores = score_fn(rows).float()  # (U, items)
        if protocol == "ncf":  # each target against its sampled negatives, before any masking
            candidates = split.candidates[rows]
            hits, ndcg = hit_ndcg(scores.gather(1, candidates.long()), candidates, 10)
            part = {"hr@10": hits, "ndcg@10": ndcg}
        wanted = gather_rows(split.targets, rows)
        _, _, ranks = rank_chunk(scores, gather_rows(split.seen, rows), wanted, k=1)  # masks seen in place
        found, n = metric_sums(wanted[0], ranks, len(rows))
        full, counted = full + found, counted + int(n)
        if protocol != "ncf":  # seen items masked, the rest ranked, the top 100 against the targets
            part = ranking_metrics(scores, *wanted)
        for name, values in part.items():
            sums[name] = sums.get(name, 0.0) + float(values.double().sum())
    out = {name: value / max(1, split.rows) for name, value in sums.items()}
    return out | dict(zip(METRICS, (full / max(1, counted)).tolist(), strict=True)) | {"full_users": counted}


@dataclass
class Choice:
    """The lambda validation chose, its B, and one record per lambda tried (the trainer's epochs)."""

    lam: float
    b: torch.Tensor
    index: int
    history: list[dict] = field(default_factory=list)


def choose_lambda(
    splits: Splits, g: torch.Tensor, lambdas: tuple[float, ...], fallback: float, on_record=None
) -> Choice:
    """Fit each of `lambdas` and keep the best on validation (SELECT; the first of equals); without a
    validation split, fit `fallback` alone. `on_record(record)` sees each lambda's record as it is made."""
    valid, key = splits.valid, f"valid_{SELECT[splits.protocol]}"
    grid = tuple(lambdas) if valid is not None else (fallback,)
    nnz = max(1, len(splits.train.indices))
    best: Choice | None = None
    history: list[dict] = []
    for index, lam in enumerate(grid):
        t0 = time.perf_counter()
        b = fit(g, lam)
        loss = objective(g, b, lam) / nnz
        t1 = time.perf_counter()
        scores = {}
        if valid is not None:
            found = heldout_metrics(ease_scorer(b, valid.inputs), valid, splits.protocol)
            scores = {f"valid_{k}": v for k, v in found.items() if k != "full_users"}
        t2 = time.perf_counter()
        record = {
            "epoch": index, "lambda": lam, "loss": loss, **scores, "train_seconds": t1 - t0,
            "eval_seconds": t2 - t1, "seconds": t2 - t0,
        }  # fmt: skip
        history.append(record)
        if on_record is not None:
            on_record(record)
        if best is None or (valid is not None and scores[key] > best.history[-1][key]):
            best = Choice(lam, b, index, [record])
        del b
    assert best is not None
    return Choice(best.lam, best.b, best.index, history)


def baseline_rows(data_dir: Path, device: str | torch.device = "cpu") -> dict[str, float]:
    """Item popularity and EASE on `data_dir`'s test users, fitted on its training data (lambda as the
    EASE trainer picks it, from configs/ease/<dataset>.yaml's grid): `popularity_<metric>`,
    `ease_<metric>`, `ease_lambda` (no EASE above BASELINE_MAX_ITEMS items). What every model card
    sets its model against.

    They depend on the folder and the lambdas alone, so they are kept beside the data (a processed
    folder never changes: its name hashes its inputs) in baselines-<hash of the settings>.json, and
    the evaluations after the first (a rescored champion, the next retraining) read them back. A
    read-only folder is recomputed each time."""
    from models.common.defaults import resolve_defaults
    from models.ease.train import TrainConfig

    settings, _ = resolve_defaults(TrainConfig, "ease", Path(data_dir), {}, lambda manifest, cfg: 0)
    key = [
        BASELINE_VERSION,
        list(settings["lambdas"]),
        settings["lambda_without_validation"],
        BASELINE_MAX_ITEMS,
    ]
    cache = Path(data_dir) / f"baselines-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:10]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    splits = load_splits(data_dir, device)
    test = splits.test
    popular = heldout_metrics(popularity(splits.train, splits.n_items), test, splits.protocol)
    drop = {"full_users"}
    rows = {f"popularity_{k}": v for k, v in popular.items() if k not in drop}
    if splits.n_items <= BASELINE_MAX_ITEMS:
        g = gram(splits.train, splits.n_items)
        chosen = choose_lambda(splits, g, settings["lambdas"], settings["lambda_without_validation"])
        del g
        ease = heldout_metrics(ease_scorer(chosen.b, test.inputs), test, splits.protocol)
        rows |= {**{f"ease_{k}": v for k, v in ease.items() if k not in drop}, "ease_lambda": chosen.lam}
    with contextlib.suppress(OSError), atomic_file(cache, "w") as handle:
        json.dump(rows, handle)
    return rows


def evaluate_bundle(bundle_dir: Path, data_dir: Path, device: str = "cpu") -> dict:
    """A saved EASE bundle on a processed dataset's test users (and validation users, when it has
    them), with item popularity under the same protocol: flat, metric -> value."""
    from models.ease.bundle import load_bundle

    where = torch.device(device)
    bundle = load_bundle(bundle_dir, where)
    splits = load_splits(data_dir, where)
    if bundle.data.get("source", {}).get("md5") != splits.manifest.get("source", {}).get("md5"):
        raise SystemExit(f"error: {bundle_dir} was trained on other data than {data_dir}")
    if bundle.b.shape[0] != splits.n_items or bundle.protocol != splits.protocol:
        raise SystemExit(f"error: {bundle_dir} was trained on another split than {data_dir}")
    result = heldout_metrics(ease_scorer(bundle.b, splits.test.inputs), splits.test, splits.protocol)
    if splits.valid is not None:
        valid = heldout_metrics(ease_scorer(bundle.b, splits.valid.inputs), splits.valid, splits.protocol)
        result |= {f"valid_{k}": v for k, v in valid.items() if k != "full_users"}
    popular = heldout_metrics(popularity(splits.train, splits.n_items), splits.test, splits.protocol)
    result |= {f"popularity_{k}": v for k, v in popular.items() if k != "full_users"}
    return {**result, "lambda": bundle.lam, "users": splits.test.rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ease.evaluate")
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate_bundle(args.bundle, args.data, args.device), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
