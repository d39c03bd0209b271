"""Leave-one-out evaluation of NeuMF: HR@k and NDCG@k over every user's 1+K candidates.

The trainer and the pipeline's evaluation task call the same function, so a bundle evaluated on its
own reproduces the trainer's last figures (exactly, on the same device and precision).

    python -m models.ncf.evaluate --bundle OUT/bundle --data DATA_DIR
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from models.common.distributed import all_reduce_sum
from models.common.precision import Precision, resolve_precision
from models.ncf.metrics import hit_ndcg
from models.ncf.model import NeuMF

SumsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def chunk_sums(model: NeuMF, precision: Precision, k: int) -> SumsFn:
    """(users, candidates, valid) -> [sum of hits, sum of NDCG] over the valid rows of one chunk."""

    def sums(users: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with precision.autocast(candidates.device):
            scores = model(users, candidates)  # (U, 1+K)
        hits, ndcg = hit_ndcg(scores.float(), candidates, k)
        return torch.stack([(hits * valid).sum(), (ndcg * valid).sum()])

    return sums


@torch.no_grad()
def candidate_sums(sums_fn: SumsFn, candidates: torch.Tensor, chunk: int = 32768) -> torch.Tensor:
    """[sum of hits, sum of NDCG] over the users of `candidates` (row u = user u of the model)."""
    n_users, device = candidates.shape[0], candidates.device
    sums = torch.zeros(2, device=device)
    if n_users == 0:
        return sums
    chunk = min(chunk, n_users)
    for start in range(0, n_users, chunk):
        # Fixed-size chunks (the last one padded and masked) keep one shape for every kernel.
        rows = torch.arange(start, start + chunk, device=device)
        index = rows.clamp(max=n_users - 1)
        sums += sums_fn(index.int(), candidates[index], (rows < n_users).float())
    return sums


@torch.no_grad()
def evaluate(
    sums_fn: SumsFn, candidates: torch.Tensor, *, rank: int = 0, world_size: int = 1, chunk: int = 32768
) -> tuple[float, float]:
    """Mean HR@k, NDCG@k; each rank scores a contiguous share of users, the sums are all-reduced."""
    n_users = candidates.shape[0]
    lo, hi = n_users * rank // world_size, n_users * (rank + 1) // world_size
    offset = lambda users, cands, valid: sums_fn(users + lo, cands, valid)  # noqa: E731
    sums = all_reduce_sum(candidate_sums(offset, candidates[lo:hi], chunk))
    hr, ndcg = (sums / n_users).tolist()
    return hr, ndcg


def evaluate_bundle(
    bundle_dir: Path, data_dir: Path, device: str = "cpu", precision: str | None = None
) -> dict:
    """Score a saved bundle on a processed dataset's test users, independently of any trainer."""
    from models.ncf.bundle import load_bundle
    from models.ncf.data import load_ncf_data

    where = torch.device(device)
    bundle = load_bundle(bundle_dir, where)
    data = load_ncf_data(data_dir, where)
    if bundle.data.get("source", {}).get("md5") != data.manifest.get("source", {}).get("md5"):
        raise SystemExit(f"error: {bundle_dir} was trained on other data than {data_dir}")
    train_cfg = bundle.config["train"]
    resolved = resolve_precision(precision or train_cfg["precision"], where)
    bundle.model.eval()
    sums_fn = chunk_sums(bundle.model, resolved, train_cfg["topk"])
    hr, ndcg = evaluate(sums_fn, data.candidates, chunk=train_cfg["eval_users_per_chunk"])
    return {"hr@10": hr, "ndcg@10": ndcg, "users": data.n_users, "precision": resolved.name}


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
