"""VAE-CF training throughput on an ml-20m-sized synthetic split built on the device: users/s, s/epoch.

    python bench/vaecf_train.py --json vaecf-1gpu.json                               # 1 GPU, 4 precisions
    torchrun --standalone --nproc-per-node 2 bench/vaecf_train.py --json vaecf-2gpu.json
    python bench/vaecf_train.py --precisions bf16 --no-compile                       # eager, for comparison
    python bench/vaecf_train.py --tiny --device cpu                                  # smoke test on a CPU

It times the real trainer (models/vaecf/train.py: its Trainer, step and evaluation), at NVIDIA's
defaults: global batch 24,576 split across ranks, Adam (fused on GPUs), [items -> 600 -> 200] model.
Per precision: build the trainer, compile (if asked), run --warmup-epochs untimed, then time
--epochs epochs, each bracketed by torch.cuda.synchronize(); report medians. users/s counts the
users trained in an epoch on all ranks. The evaluation of the 10,000 validation users is timed too.
Anchor: NVIDIA VAE-CF (TF, A100, AMP): 365k users/s on 1 GPU, 1.66M on 8 (docs ANCHORS section 2).

The data is shaped like NVIDIA's ml-20m split, not drawn from it: 136,677 users (10,000 + 10,000 of them
held out, 80/20 fold-in), 20,108 items, ~10M positives; user activity lognormal, item popularity
Zipf-like (p ~ 1/(rank + 10)^0.9), duplicates removed. Every rank builds the same data from one seed.
Imports torch and numpy (and the trainer's imports) only: no Prefect, no files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from models.common.distributed import (  # noqa: E402
    Dist,
    setup_distributed,
    sync,  # noqa: E402
    teardown_distributed,
)
from models.common.precision import resolve_precision  # noqa: E402
from models.vaecf.data import CSRTensors, VAEData  # noqa: E402
from models.vaecf.train import TrainConfig, Trainer  # noqa: E402

ML20M = {"users": 136_677, "items": 20_108, "mean_items": 78.0, "heldout": 10_000}
TINY = {"users": 3_000, "items": 800, "mean_items": 25.0, "heldout": 300}


def csr_from_pairs(rows: torch.Tensor, items: torch.Tensor, n_rows: int) -> CSRTensors:
    """Sorted (row, item) pairs -> CSR on their device."""
    counts = torch.bincount(rows, minlength=n_rows)
    indptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=indptr[1:])
    host = indptr.cpu().numpy()
    return CSRTensors(indptr, items.long().contiguous(), host, np.arange(n_rows))


@torch.no_grad()
def synthetic_split(users: int, items: int, mean_items: float, heldout: int, device: torch.device,
                    seed: int = 0) -> VAEData:  # fmt: skip
    """An ml-20m-shaped VAE-CF split, generated on `device` in well under a second on a GPU."""
    g = torch.Generator(device).manual_seed(seed)
    sigma = 1.0  # lognormal activity: median ~ mean / e^0.5, a long tail of heavy users
    mu = float(np.log(mean_items) - sigma**2 / 2)
    lengths = torch.exp(mu + sigma * torch.randn(users, generator=g, device=device))
    lengths = lengths.round().clamp(5, items // 4).long()
    nnz = int(lengths.sum())
    rows = torch.repeat_interleave(torch.arange(users, device=device), lengths, output_size=nnz)
    popularity = 1.0 / (torch.arange(items, device=device, dtype=torch.float32) + 10.0) ** 0.9
    drawn = torch.multinomial(popularity, nnz, replacement=True, generator=g)
    drawn = torch.randperm(items, generator=g, device=device)[drawn]  # popular items scattered over the ids
    keys = torch.unique(rows * items + drawn)  # sorted, duplicates gone
    rows, cols = keys // items, keys % items

    n_train = users - 2 * heldout
    train = rows < n_train
    parts = {"train": csr_from_pairs(rows[train], cols[train], n_train)}
    is_target = torch.rand(len(keys), generator=g, device=device) < 0.2  # ~80/20 fold-in/targets
    for name, lo in (("valid", n_train), ("test", n_train + heldout)):
        mine = (rows >= lo) & (rows < lo + heldout)
        for part, keep in (("foldin", mine & ~is_target), ("target", mine & is_target)):
            parts[f"{name}_{part}"] = csr_from_pairs(rows[keep] - lo, cols[keep], heldout)
    manifest = {"dataset": "synthetic-ml20m-shape", "protocol": "vaecf",
                "counts": {"items": items, "train_users": n_train, "train_positives": int(train.sum()),
                           "valid_users": heldout, "test_users": heldout}}  # fmt: skip
    return VAEData(**parts, n_items=items, manifest=manifest)


def bench_precision(name: str, data: VAEData, d: Dist, args) -> dict:
    torch._dynamo.reset()  # a fresh compile per mode: no stale guards, no cache-size-limit fallback to eager
    if d.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(d.device)
    precision = resolve_precision(name, d.device)
    cfg = TrainConfig(batch_size=args.batch_size, precision=name, compile=args.compile, device=d.device.type)
    trainer = Trainer(cfg, data, d, precision)
    t0 = time.perf_counter()
    trainer.warm_up()
    sync(d.device)
    compile_s = time.perf_counter() - t0
    users = trainer.steps * trainer.batch * d.world_size
    train_s, eval_s, losses = [], [], []
    for epoch in range(args.warmup_epochs + args.epochs):
        sync(d.device)
        t0 = time.perf_counter()
        losses.append(trainer.train_epoch(epoch))
        sync(d.device)
        t1 = time.perf_counter()
        valid = trainer.evaluate("valid")
        sync(d.device)
        t2 = time.perf_counter()
        if epoch >= args.warmup_epochs:
            train_s.append(t1 - t0)
            eval_s.append(t2 - t1)
    epoch_s = statistics.median(train_s)
    return {
        "precision": name, "gpus": d.world_size, "compiled": trainer.compiled, "users_per_epoch": users,
        "steps_per_epoch": trainer.steps, "batch_per_rank": trainer.batch, "users_per_s": users / epoch_s,
        "epoch_s": epoch_s, "epoch_s_all": train_s, "eval_s": statistics.median(eval_s),
        "warm_up_s": compile_s, "loss_first": losses[0], "loss_last": losses[-1], "valid_last": valid,
        "peak_memory_gb": torch.cuda.max_memory_allocated(d.device) / 1e9 if d.device.type == "cuda" else None,
    }  # fmt: skip


def table(results: list[dict]) -> str:
    lines = ["| precision | GPUs | compiled | users/s | s/epoch (train) | eval s (valid users) | warm-up s | loss first -> last |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        if "error" in r:
            lines.append(f"| {r['precision']} | {r['gpus']} | - | {r['error'][:60]} | | | | |")
            continue
        lines.append(
            f"| {r['precision']} | {r['gpus']} | {r['compiled']} | {r['users_per_s'] / 1e3:,.0f}k | {r['epoch_s']:.4f} | "
            f"{r['eval_s']:.4f} | {r['warm_up_s']:.1f} | {r['loss_first']:.1f} -> {r['loss_last']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here (main rank)")
    parser.add_argument("--tiny", action="store_true", help="3,000 users x 800 items: a CPU smoke test")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--precisions", default="fp32,tf32,bf16,fp16")
    parser.add_argument("--batch-size", type=int, default=24_576, help="global users per step (NVIDIA's)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per precision (median reported)")
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = TINY if args.tiny else ML20M
    if args.tiny and args.batch_size == 24_576:
        args.batch_size = 1_024
    d = setup_distributed(args.device)
    try:
        t0 = time.perf_counter()
        data = synthetic_split(
            shape["users"], shape["items"], shape["mean_items"], shape["heldout"], d.device, args.seed
        )
        sync(d.device)
        build_s = time.perf_counter() - t0
        if d.is_main:
            print(
                f"data: {data.manifest['counts']} built in {build_s:.2f}s on {d.device}",
                file=sys.stderr,
                flush=True,
            )
        results = []
        for name in args.precisions.split(","):
            if name == "fp16" and d.device.type != "cuda":
                results.append(
                    {"precision": name, "gpus": d.world_size, "error": "skipped: fp16 needs a GPU"}
                )
                continue
            try:
                results.append(bench_precision(name, data, d, args))
            except Exception as err:  # one failing mode (say, a compiler error) must not lose the others
                if d.enabled:
                    raise  # ranks would fall out of step
                traceback.print_exc()
                results.append(
                    {"precision": name, "gpus": d.world_size, "error": f"{type(err).__name__}: {err}"}
                )
            if d.is_main:
                print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        if d.is_main:
            report = {
                "device": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else "cpu",
                "torch": torch.__version__, "world_size": d.world_size, "data": data.manifest["counts"],
                "data_build_s": build_s, "batch_size": args.batch_size, "results": results,
            }  # fmt: skip
            print(table(results))
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        teardown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
