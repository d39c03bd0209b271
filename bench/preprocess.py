"""NCF preprocessing speed (CSV parse included) on the CPU (NumPy) and the GPU (CuPy).

    python bench/preprocess.py --raw DIR_WITH_ratings.csv --json out.json [--devices cpu,gpu]

Each device runs the whole stage into a fresh folder: checksum, read, split, write; seconds per stage
come from the manifest. Run `ncflow synth ml20m --out DIR` first for the ml-20m-sized preset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import PreprocessConfig  # noqa: E402
from ncflow.data.preprocess import preprocess, read_manifest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--devices", default="cpu,gpu")
    parser.add_argument(
        "--repeats", type=int, default=2, help="best of N (the first GPU run pays CuPy's kernel builds)"
    )
    args = parser.parse_args()
    rows = []
    for device in args.devices.split(","):
        best = None
        for _ in range(args.repeats):
            out_root = Path(tempfile.mkdtemp(prefix=f"bench-pre-{device}-"))
            start = time.perf_counter()
            out = preprocess("synth-ml20m", args.raw, out_root, PreprocessConfig(), device=device)
            total = time.perf_counter() - start
            manifest = read_manifest(out)
            shutil.rmtree(out_root)
            row = {"device": device, "backend": manifest["backend"], "total_seconds": total, **manifest["seconds"],
                   **manifest["counts"]}  # fmt: skip
            best = row if best is None or total < best["total_seconds"] else best
        rows.append(best)
        print(json.dumps(best), flush=True)
    print(
        "| device | backend | total s | checksum s | read s | split s | write s | users | items | train positives |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['backend']} | {r['total_seconds']:.2f} | {r['checksum']:.2f} | {r['read']:.2f} | "
              f"{r['split']:.2f} | {r['write']:.2f} | {r['users']:,} | {r['items']:,} | {r['train_positives']:,} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
