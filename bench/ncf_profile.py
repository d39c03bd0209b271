"""Where one NCF training step spends its GPU time: step time per variant, and the top kernels.

    python bench/ncf_profile.py --data DIR [--variants atomic,sorted] [--precision bf16]

Variants: `atomic` (the compiler's embedding backward: atomic scatter-adds), `sorted` (ATen's sorted
segment-sum backward through models/common/gather.py), `bytes` (dropout noise as eager random bytes,
models/common/dropout.py). Times 40 compiled steps with CUDA events after
warm-up (median of 4 groups of 10), then profiles 5 steps and prints the 12 costliest kernels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.common.distributed import setup_distributed  # noqa: E402
from models.common.precision import resolve_precision  # noqa: E402
from models.ncf.data import load_ncf_data  # noqa: E402
from models.ncf.train import TrainConfig, Trainer  # noqa: E402


def steps(trainer: Trainer, users, items, negatives, first: int, count: int) -> None:
    b = trainer.batch_positives
    for step in range(first, first + count):
        rows = slice(step * b, (step + 1) * b)
        batch_items = torch.cat([items[rows, None], negatives[:, rows].t()], dim=1)
        loss = trainer.forward_loss(users[rows], batch_items, trainer.labels)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--variants", default="atomic,sorted")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    d = setup_distributed("cuda")
    data = load_ncf_data(args.data, d.device)
    results = {}
    for variant in args.variants.split(","):
        cfg = TrainConfig(
            precision=args.precision,
            sorted_embedding_grad=variant == "sorted",
            byte_dropout=variant == "bytes",
            device="cuda",
        )
        trainer = Trainer(cfg, data, d, resolve_precision(cfg.precision, d.device))
        trainer.warm_up()
        users, items, negatives = trainer.epoch_samples(0)
        trainer.model.train()
        steps(trainer, users, items, negatives, 0, 5)
        times = []
        for group in range(4):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            steps(trainer, users, items, negatives, 5 + 10 * group, 10)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 10)
        step_ms = statistics.median(times)
        samples = trainer.batch_positives * (1 + cfg.negatives)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            steps(trainer, users, items, negatives, 50, 5)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70)
        print(
            f"\n=== {variant}: {step_ms:.2f} ms/step, {samples / step_ms / 1e3:.1f}M samples/s ({dataclasses.asdict(cfg)['precision']})"
        )
        print(table)
        results[variant] = {"step_ms": step_ms, "samples_per_s": samples / step_ms * 1e3, "group_ms": times}
        del trainer
        torch.cuda.empty_cache()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
