"""Why two single-process nodes on one host trained their first epoch 5-20x slower than one node with
2 processes (issue 19), and that the fix holds: the same trainer three ways, on CPUs, gloo.

    python bench/two_nodes_cpu.py --data data/processed/ml-100k-ncf-... --epochs 2 --json out.json

1. one torchrun agent, 2 processes (`--standalone`);
2. two agents of 1 process each on 127.0.0.1 (`--nnodes 2`, c10d rendezvous), each process taking
   this machine's cores for itself, as before the fix (NCFLOW_HOST_PROCESSES=1);
3. the same with NCFLOW_HOST_PROCESSES=2, what ncflow/nodes.py sets when it puts two nodes on one host.

Per case: each epoch's train seconds (the trainer's events) and the CPU seconds of all its processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ncflow.nodes import free_port


def trainer(data: Path, out: Path, epochs: int) -> list[str]:
    return ["-m", "models.ncf.train", "--data", str(data), "--out", str(out), "--device", "cpu",
            "--epochs", str(epochs)]  # fmt: skip


def run(commands: list[list[str]], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True) for c in commands
    ]
    epochs = []
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, proc.returncode
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        epochs += [round(e["train_seconds"], 2) for e in events if e["event"] == "epoch"]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"epoch_train_s": epochs, "cpu_s": round(cpu, 1), "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/two-nodes-cpu"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # a left-over checkpoint would resume
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    results = {}
    one = [
        [*torchrun, "--standalone", "--nproc-per-node=2", *trainer(args.data, args.out / "one", args.epochs)]
    ]
    results["1 node x 2 processes"] = run(one, {})
    for sharing in ("1", "2"):
        port = free_port()
        nodes = [
            [*torchrun, "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=bench-{port}", f"--rdzv-conf=is_host={str(n == 0).lower()}",
             *trainer(args.data, args.out / f"two-{sharing}", args.epochs)]
            for n in range(2)
        ]  # fmt: skip
        results[f"2 nodes x 1 process, NCFLOW_HOST_PROCESSES={sharing}"] = run(
            nodes, {"NCFLOW_HOST_PROCESSES": sharing}
        )
    for name, result in results.items():
        print(f"{name}: {result}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
