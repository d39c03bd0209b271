"""Time full-ranking evaluation of NeuMF on synthetic ml-20m-sized data: every user against every item.

    python bench/full_rank.py --users 138493 --items 26744                # the issue's target: < 3 s, 1 H200
    python bench/full_rank.py --users 2000 --items 500 --device cpu       # a smoke run anywhere

The data is random (long-tailed users and items, ~20M training positives at full size) and the model
untrained, ml-20m's NeuMF (64 / 256-256-128-64): the work, shapes and masks are those of a real run.
The clock covers scoring, masking, ranking and the metrics of every user (models.ncf.evaluate.full_rank)
after one warm-up run, between torch.cuda.synchronize() calls; the seen-item CSR is built before it.
Each chunk size of --chunk-users is timed (default: half, 1, 2 and 4 times models.ncf.evaluate's
memory-sized chunk, `auto`); `scorer` says which NeuMF.score_items formulation ran (fused on CUDA).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common.full_rank import popularity_scorer, rank_users  # noqa: E402
from models.common.precision import resolve_precision  # noqa: E402
from models.ncf.data import NCFData  # noqa: E402
from models.ncf.evaluate import full_rank, full_rank_chunk, ncf_scorer, seen_items  # noqa: E402
from models.ncf.model import NeuMF, NeuMFConfig  # noqa: E402


def synthetic(users: int, items: int, positives: int, device: torch.device, seed: int = 0) -> NCFData:
    """Random interactions, long-tailed like MovieLens: >= 20 per user, Zipf-like item popularity."""
    rng = np.random.default_rng(seed)
    per_user = rng.lognormal(0.0, 1.0, users)
    per_user = np.maximum(20, per_user / per_user.sum() * positives).astype(np.int64)
    per_user = np.minimum(per_user, items // 2)
    user = np.repeat(np.arange(users, dtype=np.int64), per_user)
    item = (rng.zipf(1.3, len(user)) - 1) % items
    keys = np.unique(user * items + item)  # one row per pair, sorted by (user, item)
    train_user, train_item = keys // items, keys % items
    test = rng.integers(0, items, users)  # a held-out item per user, outside its training items
    taken = np.isin(np.arange(users) * items + test, keys)
    while taken.any():
        test[taken] = rng.integers(0, items, int(taken.sum()))
        taken = np.isin(np.arange(users) * items + test, keys)
    candidates = np.concatenate([test[:, None], rng.integers(0, items, (users, 100))], axis=1)

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int32)).to(device)

    counts = {"users": users, "items": items}
    return NCFData(
        put(train_user),
        put(train_item),
        put(candidates),
        put(np.arange(users)),
        users,
        items,
        {"counts": counts},
    )


def timed(fn, device: torch.device, repeats: int) -> tuple[list[float], object]:
    result, seconds = fn(), []  # the first run warms kernels and the allocator
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def chunk_users(text: str, auto: int) -> int:
    """A --chunk-users entry: a count, `auto`, or `auto*N` / `auto/N`."""
    text = text.strip()
    for op, apply in (("*", lambda n: auto * n), ("/", lambda n: auto // n)):
        if text.startswith(f"auto{op}"):
            return max(1, apply(int(text[5:])))
    return auto if text == "auto" else max(1, int(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--positives", type=int, default=19_861_770, help="about ml-20m's, scaled to --users")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--chunk-users", default="auto/2,auto,auto*2,auto*4", help="users per chunk to try; auto: the default"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--topk", type=int, default=100, help="also time top-k for every user (0: skip)")
    args = parser.parse_args()

    device = torch.device(args.device)
    positives = int(args.positives * min(1.0, args.users / 138_493))
    start = time.perf_counter()
    data = synthetic(args.users, args.items, positives, device)
    seen = seen_items(data, "test")
    setup_s = time.perf_counter() - start
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(args.users, args.items)).to(device).eval()
    precision = resolve_precision(args.precision, device)
    score = ncf_scorer(model, precision)

    auto = full_rank_chunk(model, args.items, device, precision.autocast_dtype)
    chunks = [min(args.users, chunk_users(c, auto)) for c in args.chunk_users.split(",")]
    runs = []
    for chunk in sorted(set(chunks)):
        seconds, metrics = timed(lambda c=chunk: full_rank(score, data, "test", c), device, args.repeats)
        runs.append({"chunk_users": chunk, "seconds": seconds, "best_s": min(seconds)})
        print(json.dumps(runs[-1]), file=sys.stderr)
    best = min(runs, key=lambda r: r["best_s"])
    result = {
        "what": "full-ranking HR@10/NDCG@10/Recall@20 of every user, NeuMF 64/256-256-128-64",
        "users": args.users, "items": args.items, "train_positives": len(data.train_user),
        "scores": args.users * args.items, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else "cpu", "precision": precision.name, "torch": torch.__version__, "setup_s": setup_s,
        "scorer": "fused" if model.fused_scoring(device, precision.autocast_dtype) else "gemm",
        "auto_chunk_users": auto,
        "best_s": best["best_s"], "chunk_users": best["chunk_users"], "runs": runs,
        "scores_per_s": args.users * args.items / best["best_s"], "metrics": metrics,
    }  # fmt: skip
    popular = popularity_scorer(data.train_item, args.items)
    seconds, _ = timed(lambda: full_rank(popular, data, "test", 4096), device, args.repeats)
    result["popularity_best_s"] = min(seconds)
    if args.topk:
        users = torch.arange(args.users, device=device)

        def top_k() -> int:
            return sum(
                len(p.users) for p in rank_users(score, users, seen, k=args.topk, chunk=best["chunk_users"])
            )

        seconds, _ = timed(top_k, device, args.repeats)
        result[f"top{args.topk}_best_s"] = min(seconds)  # scores and top-k on the device, no Parquet
    print(json.dumps(result))


if __name__ == "__main__":
    main()
