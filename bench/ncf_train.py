"""NCF training and evaluation speed on the GPU, per precision, on one or several GPUs.

    python bench/ncf_train.py --data DIR --json out.json                        # 1 GPU
    torchrun --nproc-per-node 2 bench/ncf_train.py --data DIR --json out.json   # 2 GPUs (NCCL)
    python bench/ncf_train.py --data DIR --device cpu --epochs 1 --precisions fp32 --batch-size 8192  # smoke test

For each precision: warm-up (kernel compilation and step capture, timed apart), then `--epochs` timed
epochs; reports the median epoch's training samples/s and seconds, evaluation samples/s, the sampler's
share, and peak GPU memory. `--eager-reference` adds ncflow's model run the way NVIDIA's reference runs
(no CUDA graph, fp16 + GradScaler), so the gain from graph capture shows in the same run. `--time-to-target` trains bf16 from scratch
until `--target-hr` (or `--max-epochs`) and reports the HR@10 curve and the time to reach it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common.distributed import (  # noqa: E402
    setup_distributed,
    sync,  # noqa: E402
    teardown_distributed,
)
from models.common.precision import resolve_precision  # noqa: E402
from models.ncf.data import load_ncf_data  # noqa: E402
from models.ncf.train import TrainConfig, Trainer  # noqa: E402

REFERENCE = {
    "train_samples_per_s": 70.6e6,
    "epoch_seconds": 1.41,
    "eval_samples_per_s": 107e6,
}  # H200, GPU.md


def timed(device: torch.device, fn):
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def measure(cfg: TrainConfig, data, d, epochs: int) -> dict:
    trainer = Trainer(cfg, data, d, resolve_precision(cfg.precision, d.device))
    compile_s, _ = timed(d.device, trainer.warm_up)
    if d.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(d.device)
    train_s, eval_s, sample_s, hr = [], [], [], 0.0
    for epoch in range(epochs):
        sample_s.append(timed(d.device, lambda e=epoch: trainer.epoch_samples(e))[0])
        train_s.append(timed(d.device, lambda e=epoch: trainer.train_epoch(e))[0])
        seconds, (hr, _) = timed(d.device, trainer.evaluate)
        eval_s.append(seconds)
    samples = trainer.steps * trainer.batch_positives * (1 + cfg.negatives) * d.world_size
    peak = torch.cuda.max_memory_allocated(d.device) / 2**30 if d.device.type == "cuda" else 0.0
    epoch_s = statistics.median(train_s)
    return {
        "precision": cfg.precision, "cuda_graphs": trainer.graph is not None, "gpus": d.world_size,
        "train_samples_per_s": samples / epoch_s, "epoch_seconds": epoch_s,
        "eval_samples_per_s": data.candidates.numel() / statistics.median(eval_s),
        "eval_seconds": statistics.median(eval_s), "sampler_seconds": statistics.median(sample_s),
        "warm_up_seconds": compile_s, "peak_gib": peak, "hr@10_after": hr, "epochs_timed": epochs,
    }  # fmt: skip


def time_to_target(cfg: TrainConfig, data, d, max_epochs: int) -> dict:
    trainer = Trainer(cfg, data, d, resolve_precision(cfg.precision, d.device))
    trainer.warm_up()
    elapsed, curve, reached = 0.0, [], None
    for epoch in range(max_epochs):
        train_s, _ = timed(d.device, lambda e=epoch: trainer.train_epoch(e))
        eval_s, (hr, ndcg) = timed(d.device, trainer.evaluate)
        elapsed += train_s + eval_s
        curve.append(
            {"epoch": epoch, "hr@10": round(hr, 4), "ndcg@10": round(ndcg, 4), "seconds": round(elapsed, 2)}
        )
        if reached is None and hr >= cfg.target_hr:
            reached = elapsed
            break
    return {
        "target_hr": cfg.target_hr,
        "time_to_target_s": reached,
        "curve": curve,
        "precision": cfg.precision,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="fp32,tf32,bf16,fp16")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (median reported)")
    parser.add_argument("--batch-size", type=int, default=2**20)
    parser.add_argument("--eager-reference", action="store_true")
    parser.add_argument("--time-to-target", action="store_true")
    parser.add_argument("--target-hr", type=float, default=0.9562)
    parser.add_argument("--max-epochs", type=int, default=30)
    args = parser.parse_args()

    d = setup_distributed(args.device)
    try:
        data = load_ncf_data(args.data, d.device)
        base = TrainConfig(batch_size=args.batch_size, device=d.device.type, target_hr=1.0)
        rows = [
            measure(dataclasses.replace(base, precision=p), data, d, args.epochs)
            for p in args.precisions.split(",")
        ]
        if args.eager_reference:
            rows.append(
                measure(dataclasses.replace(base, precision="fp16", cuda_graphs=False), data, d, args.epochs)
            )
        result = {
            "gpu": torch.cuda.get_device_name(d.device) if d.device.type == "cuda" else "cpu",
            "torch": torch.__version__, "world_size": d.world_size, "rows": rows, "reference_h200": REFERENCE,
            "data": {"users": data.n_users, "items": data.n_items, "train_positives": len(data.train_user)},
        }  # fmt: skip
        if args.time_to_target:
            cfg = dataclasses.replace(base, precision="bf16", target_hr=args.target_hr)
            result["time_to_target"] = time_to_target(cfg, data, d, args.max_epochs)
        if d.is_main:
            print_table(result)
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
    finally:
        teardown_distributed()
    return 0


def print_table(result: dict) -> None:
    print(
        f"\n{result['gpu']}, torch {result['torch']}, {result['world_size']} process(es), data {result['data']}"
    )
    print(
        "| precision | CUDA graph | GPUs | train samples/s | s/epoch | eval samples/s | sampler s | warm-up s | peak GiB | HR@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(
            f"| {r['precision']} | {r['cuda_graphs']} | {r['gpus']} | {r['train_samples_per_s'] / 1e6:.1f}M | "
            f"{r['epoch_seconds']:.3f} | {r['eval_samples_per_s'] / 1e6:.0f}M | {r['sampler_seconds']:.3f} | "
            f"{r['warm_up_seconds']:.1f} | {r['peak_gib']:.1f} | {r['hr@10_after']:.4f} |"
        )
    ref = result["reference_h200"]
    print(f"| reference (NVIDIA PyTorch NCF, AMP, H200, GPU.md) | - | 1 | {ref['train_samples_per_s'] / 1e6:.1f}M | "
          f"{ref['epoch_seconds']:.2f} | {ref['eval_samples_per_s'] / 1e6:.0f}M | | | | |")  # fmt: skip
    if "time_to_target" in result:
        t = result["time_to_target"]
        print(f"time to HR@10 {t['target_hr']}: {t['time_to_target_s']} s; curve: {t['curve']}")


if __name__ == "__main__":
    sys.exit(main())
