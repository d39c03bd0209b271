"""Where one NCF training step's time goes, per rank: host launch time against GPU kernel time.

    python bench/ncf_step_profile.py --data DIR                           # 1 GPU
    torchrun --nproc-per-node 2 bench/ncf_step_profile.py --data DIR      # every rank prints its own

Times `--steps` steps of the real trainer (models/ncf/train.py, after warm-up and graph capture) with
CUDA events, then profiles a few more with torch.profiler and prints the top GPU kernels by time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.common.distributed import setup_distributed, teardown_distributed  # noqa: E402
from models.common.precision import resolve_precision  # noqa: E402
from models.ncf.data import load_ncf_data  # noqa: E402
from models.ncf.train import TrainConfig, Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    d = setup_distributed("cuda")
    try:
        data = load_ncf_data(args.data, d.device)
        cfg = TrainConfig(precision=args.precision, target_hr=1.0, device="cuda")
        trainer = Trainer(cfg, data, d, resolve_precision(cfg.precision, d.device))
        trainer.warm_up()
        users, items = trainer.epoch_samples(0)
        b = trainer.batch_positives

        def run(steps: int) -> None:
            for step in range(steps):
                s = step % trainer.steps
                trainer.users_in.copy_(users[s * b : (s + 1) * b])
                trainer.items_in.copy_(items[s * b : (s + 1) * b])
                trainer.step(step)

        run(5)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        run(args.steps)
        end.record()
        torch.cuda.synchronize()
        step_ms = start.elapsed_time(end) / args.steps
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run(10)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=18)
        kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_ms = sum(e.self_device_time_total for e in kernels) / 1e3 / 10
        samples = b * (1 + cfg.negatives) * d.world_size
        result = {
            "rank": d.rank, "world_size": d.world_size, "step_ms": step_ms, "gpu_busy_ms_per_step": gpu_ms,
            "samples_per_s": samples / step_ms * 1e3, "batch_positives_per_rank": b,
        }  # fmt: skip
        print(f"=== rank {d.rank}/{d.world_size}: {json.dumps(result)}\n{table}", flush=True)
        if args.json and d.is_main:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        teardown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
