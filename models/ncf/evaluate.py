"""Leave-one-out evaluation of NeuMF: HR@k and NDCG@k over every user's 1+K candidates (sampled), and
full-ranking HR@10, NDCG@10 and Recall@20 against every unseen item (models/common/full_rank.py).

The trainer and the pipeline's evaluation task call the same functions, so a bundle evaluated on its
own reproduces the trainer's figures (exactly, on the same device and precision). With a validation
split (valid.parquet), validation users are scored the same way: their training items are seen; at
test time the validation item is seen too.

    python -m models.ncf.evaluate --bundle OUT/bundle --data DATA_DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.common.distributed import all_reduce_sum
from models.common.full_rank import CSR, METRICS, ScoreFn, full_rank_metrics
from models.common.precision import Precision, resolve_precision
from models.ncf.data import NCFData
from models.ncf.metrics import hit_ndcg
from models.ncf.model import NeuMF

SumsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
COLD_COUNTS = ("cold_start_users", "cold_start_items", "cold_start_rows", "repeat_rows")


def chunk_sums(model: NeuMF, precision: Precision, k: int) -> SumsFn:
    """(users, candidates, valid) -> [sum of hits, sum of NDCG] over the valid rows of one chunk."""

    def sums(users: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with precision.autocast(candidates.device):
            scores = model(users, candidates)  # (U, 1+K)
        hits, ndcg = hit_ndcg(scores.float(), candidates, k)
        return torch.stack([(hits * valid).sum(), (ndcg * valid).sum()])

    return sums


@torch.no_grad()
def candidate_sums(
    sums_fn: SumsFn, candidates: torch.Tensor, chunk: int = 32768, users: torch.Tensor | None = None
) -> torch.Tensor:
    """[sum of hits, sum of NDCG] over the rows of `candidates`: row r is user users[r] of the model
    (default: row u is user u)."""
    n_users, device = candidates.shape[0], candidates.device
    sums = torch.zeros(2, device=device)
    if n_users == 0:
        return sums
    chunk = min(chunk, n_users)
    for start in range(0, n_users, chunk):
        # Fixed-size chunks (the last one padded and masked) keep one shape for every kernel.
        rows = torch.arange(start, start + chunk, device=device)
        index = rows.clamp(max=n_users - 1)
        who = index.int() if users is None else users[index].int()
        sums += sums_fn(who, candidates[index], (rows < n_users).float())
    return sums


FUSED_BYTES_PER_PAIR = 8  # the fused scorer: fp32 scores, plus ranking's (U, I) bool compares and slack


def full_rank_chunk(
    model: NeuMF,
    n_items: int,
    device: torch.device | str,
    dtype: torch.dtype | None = None,
    budget_bytes: int = 2**31,
) -> int:
    """Users per full-ranking chunk: what one chunk of users holds at once fits `budget_bytes`.

    `dtype` is the compute dtype (Precision.autocast_dtype; None: fp32). With the fused scorer
    (NeuMF.fused_scoring: CUDA, bf16), a chunk holds only its (users, items) fp32 scores and ranking's
    temporaries, FUSED_BYTES_PER_PAIR a pair: 10,037 ml-20m users in 2 GiB. With the GEMM path, the
    first MLP layer's (users x items x width) bf16 output is the budget.
    """
    layers = model.config.mlp_layers
    fused = model.fused_scoring(device, dtype)
    per_pair = FUSED_BYTES_PER_PAIR if fused else 2 * (layers[1] if layers else 1)
    return max(1, budget_bytes // (per_pair * n_items))


def ncf_scorer(model: NeuMF, precision: Precision) -> ScoreFn:
    """users -> logits (U, items) for every item, in the model's evaluation precision."""

    def score(users: torch.Tensor) -> torch.Tensor:
        with precision.autocast(users.device):
            return model.score_items(users)

    return score


def seen_items(data: NCFData, split: str) -> CSR:
    """Each user's items excluded from ranking: training items, and at test time the validation item."""
    users, items = data.train_user, data.train_item
    if split == "test" and data.has_validation:
        users = torch.cat([users, data.valid_user])
        items = torch.cat([items, data.valid_candidates[:, 0]])
    return CSR.from_pairs(users, items, data.n_users)  # built where the data lives


def full_rank(score_fn: ScoreFn, data: NCFData, split: str = "test", chunk: int = 1024) -> dict[str, float]:
    """Full-ranking metrics of `split`'s held-out items of each of its users (one host process): the
    held-out item, or with the temporal protocol every target of the test window."""
    if split == "test":
        users, held_out = data.test_user.long(), data.candidates[:, 0]
    else:
        users, held_out = data.valid_user.long(), data.valid_candidates[:, 0]
    if split == "test" and data.targets is not None:
        targets = CSR.from_numpy(*data.targets, users.device)
    else:
        targets = CSR.from_numpy(np.arange(len(users) + 1), held_out.cpu().numpy(), users.device)
    return full_rank_metrics(score_fn, users, seen_items(data, split), targets, chunk=chunk)


@torch.no_grad()
def evaluate(
    sums_fn: SumsFn,
    candidates: torch.Tensor,
    users: torch.Tensor,
    *,
    rank: int = 0,
    world_size: int = 1,
    chunk: int = 32768,
) -> tuple[float, float]:
    """Mean HR@k, NDCG@k of the rows of `candidates` (row r: user users[r]); each rank scores a
    contiguous share of the rows, the sums are all-reduced."""
    n_rows = candidates.shape[0]
    lo, hi = n_rows * rank // world_size, n_rows * (rank + 1) // world_size
    sums = all_reduce_sum(candidate_sums(sums_fn, candidates[lo:hi], chunk, users[lo:hi]))
    hr, ndcg = (sums / max(1, n_rows)).tolist()
    return hr, ndcg


def evaluate_bundle(
    bundle_dir: Path, data_dir: Path, device: str = "cpu", precision: str | None = None
) -> dict:
    """Score a saved bundle on a processed dataset's test users, independently of any trainer."""
    from models.ease.evaluate import baseline_rows
    from models.ncf.bundle import load_bundle
    from models.ncf.data import load_ncf_data

    where = torch.device(device)
    bundle = load_bundle(bundle_dir, where)
    data = load_ncf_data(data_dir, where)
    if bundle.data.get("source", {}).get("md5") != data.manifest.get("source", {}).get("md5"):
        raise SystemExit(f"error: {bundle_dir} was trained on other data than {data_dir}")
    train_cfg = bundle.config["train"]
    resolved = resolve_precision(precision or train_cfg["precision"], where)
    model = bundle.model.eval()
    sums_fn = chunk_sums(model, resolved, train_cfg["topk"])
    hr, ndcg = evaluate(sums_fn, data.candidates, data.test_user, chunk=train_cfg["eval_users_per_chunk"])
    result = {"hr@10": hr, "ndcg@10": ndcg, "users": len(data.test_user), "precision": resolved.name}
    counts = data.manifest["counts"]  # what the temporal protocol could not test, reported beside it
    result |= {name: counts[name] for name in COLD_COUNTS if name in counts}
    if data.has_validation:
        sums = candidate_sums(
            sums_fn, data.valid_candidates, train_cfg["eval_users_per_chunk"], data.valid_user
        )
        valid_hr, valid_ndcg = (sums / max(1, len(data.valid_user))).tolist()
        result |= {"valid_hr@10": valid_hr, "valid_ndcg@10": valid_ndcg}
    chunk = full_rank_chunk(model, data.n_items, where, resolved.autocast_dtype)
    full = full_rank(ncf_scorer(model, resolved), data, "test", chunk)
    if data.has_validation:  # what the `best` alias compares across models (ncflow/best.py)
        valid_full = full_rank(ncf_scorer(model, resolved), data, "valid", chunk)
        result |= {f"valid_{k}": v for k, v in valid_full.items() if k in METRICS}
    # Item popularity and EASE, fitted on the same training data and scored the same way (sampled and
    # full): the baseline rows of the model card.
    return result | full | baseline_rows(data_dir, where)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.ncf.evaluate")
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate_bundle(args.bundle, args.data, args.device, args.precision)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
