"""HR@10 / NDCG@10 of NeuMF against item popularity and GMF (plain matrix factorisation), same protocol.

    python bench/ncf_accuracy.py --data DIR --json out.json [--epochs 20] [--device cuda]

Every model trains through the real trainer (`python -m models.ncf.train`) on the same split and is
scored on the same 1+100 candidates per user. There is no validation split in this protocol, so each
model gets the same small grid and the table shows every point, not only the best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.ncf.metrics import hit_ndcg  # noqa: E402

MODELS = {
    "NeuMF": ["--mf-dim", "64", "--mlp-layers", "256,256,128,64"],
    "GMF": ["--mf-dim", "64", "--mlp-layers", ""],
}


def popularity(data: Path) -> dict:
    train = pq.read_table(data / "train.parquet").column("item").to_numpy()
    test = pq.read_table(data / "test.parquet")
    k = test.schema.field("negatives").type.list_size
    negatives = test.column("negatives").combine_chunks().flatten().to_numpy().reshape(-1, k)
    candidates = torch.from_numpy(
        np.concatenate([test.column("item").to_numpy()[:, None], negatives], 1)
    ).long()
    counts = torch.from_numpy(np.bincount(train, minlength=int(candidates.max()) + 1)).float()
    hits, ndcg = hit_ndcg(counts[candidates], candidates)
    return {"model": "popularity", "hr@10": hits.mean().item(), "ndcg@10": ndcg.mean().item()}


def train(data: Path, name: str, flags: list[str], device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "models.ncf.train", "--data", str(data), "--out", out,
                   "--device", device, "--target-hr", "1.0", *MODELS[name], *flags]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    final = events[-1]
    return {"model": name, "flags": " ".join(flags), "hr@10": final["hr@10"], "ndcg@10": final["ndcg@10"],
            "best_hr@10": final["best_hr@10"], "best_epoch": final["best_epoch"]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    common = ["--epochs", str(args.epochs), "--batch-size", "2048", "--beta1", "0.9", "--beta2", "0.999"]
    rows = [popularity(args.data)]
    for lr in ("0.001", "0.003"):
        rows.append(train(args.data, "GMF", [*common, "--lr", lr], args.device))
        for dropout in ("0.1", "0.5"):
            rows.append(train(args.data, "NeuMF", [*common, "--lr", lr, "--dropout", dropout], args.device))
        print(json.dumps(rows[-3:]), flush=True)
    print("| model | settings | HR@10 (last epoch) | NDCG@10 (last epoch) | best HR@10 (epoch) |")
    print("|---|---|---|---|---|")
    for r in rows:
        best = f"{r['best_hr@10']:.4f} ({r['best_epoch']})" if "best_hr@10" in r else "-"
        print(f"| {r['model']} | {r.get('flags', '-')} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {best} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
