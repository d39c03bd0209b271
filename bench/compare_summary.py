"""Read what bench/compare_reference.sh left in OUT and write OUT/compare.json with a `ratios` object.

    python bench/compare_summary.py OUT N_GPUS [--target 0.85]

Ratios are ncflow's advantage, > 1 is better: throughput ncflow / reference; wall time reference /
ncflow; scaling ncflow's N-GPU samples/s over its 1-GPU samples/s. A figure that was not measured is
null, and so is every ratio that needs it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import date
from pathlib import Path


def read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def number(path: Path) -> float | None:
    text = read(path)
    return float(text) if text else None


def events(path: Path) -> list[dict]:
    text = read(path) or ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def reference_log(path: Path) -> dict | None:
    """Median train samples/s of the reference's epochs after the first, and its final record."""
    text = read(path)
    if not text:
        return None
    records = [json.loads(line[4:]) for line in text.splitlines() if line.startswith("DLL ")]
    epochs = [r["data"] for r in records if "train_throughput" in r["data"]]
    final = next((r["data"] for r in reversed(records) if "time_to_target" in r["data"]), {})
    rates = [e["train_throughput"] for e in epochs[1:]] or [e["train_throughput"] for e in epochs]
    return {
        "train_samples_per_s": statistics.median(rates) if rates else None,
        "eval_samples_per_s": statistics.median(e["eval_throughput"] for e in epochs) if epochs else None,
        "epochs": len(epochs), "hr@10": epochs[-1]["hr@10"] if epochs else None,
        "time_to_target_in_process_s": final.get("time_to_target"),
    }  # fmt: skip


def ncflow_run(out: Path, name: str) -> dict | None:
    wall = number(out / f"{name}.s")
    if wall is None:
        return None
    ev = events(out / f"{name}.jsonl")
    first = lambda kind: next((e for e in ev if e["event"] == kind), {})  # noqa: E731
    done = first("done")
    return {
        "wall_s": wall, "epochs": done.get("epochs"), "hr@10": done.get("hr@10"),
        "reached_target": done.get("time_to_target_s") is not None,
        "start_event_process_s": first("start").get("process_s"),
        "ready_process_s": first("ready").get("process_s"), "warm_up_s": first("ready").get("warm_up_s"),
        "start_phases": first("start").get("phases"), "warm_up_phases": first("ready").get("phases"),
        "train_seconds": done.get("train_seconds"), "done_process_s": done.get("process_s"),
    }  # fmt: skip


def throughput(out: Path, gpus: int) -> dict:
    mine = json.loads(read(out / f"thr_ncflow_{gpus}.json") or "null")
    ref = reference_log(out / f"thr_reference_{gpus}.log")
    row = mine["rows"][0] if mine else {}
    return {
        "ncflow_samples_per_s": row.get("train_samples_per_s"), "ncflow_eval_samples_per_s": row.get("eval_samples_per_s"),
        "ncflow_hr@10_after": row.get("hr@10_after"),
        "reference_samples_per_s": ref and ref["train_samples_per_s"],
        "reference_eval_samples_per_s": ref and ref["eval_samples_per_s"],
    }  # fmt: skip


def vae(out: Path, gpus: int) -> float | None:
    report = json.loads(read(out / f"vae_{gpus}.json") or "null")
    rows = [r for r in (report or {}).get("results", []) if "users_per_s" in r]
    return rows[0]["users_per_s"] if rows else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("gpus", type=int)
    parser.add_argument("--target", type=float, default=0.85)
    args = parser.parse_args()
    out, n = args.out, args.gpus
    counts = [g for g in (1, 2, 4, 8) if g <= n] + ([n] if n not in (1, 2, 4, 8) else [])
    thr = {g: throughput(out, g) for g in counts}
    walls = {
        "ncflow_1_bare": ncflow_run(out, "wall_ncflow_1_bare"),  # no bytecode either: not a ratio
        "ncflow_1_eager": ncflow_run(out, "wall_ncflow_1_eager"),  # no CUDA graph: not a ratio
        "ncflow_1_cold": ncflow_run(out, "wall_ncflow_1_cold"), "ncflow_1_warm": ncflow_run(out, "wall_ncflow_1_warm"),
        f"ncflow_{n}_warm": ncflow_run(out, f"wall_ncflow_{n}_warm"),
        "reference_1": {"wall_s": number(out / "wall_reference_1.s"), **(reference_log(out / "wall_reference_1.log") or {})},
        f"reference_{n}": {"wall_s": number(out / f"wall_reference_{n}.s"), **(reference_log(out / f"wall_reference_{n}.log") or {})},
    }  # fmt: skip
    one = thr[1]["ncflow_samples_per_s"]
    ref_wall = walls["reference_1"]["wall_s"]
    cold, warm = walls["ncflow_1_cold"], walls["ncflow_1_warm"]
    ratios = {
        "train_1gpu": ratio(one, thr[1]["reference_samples_per_s"]),
        "cold_wall": ratio(ref_wall, cold and cold["wall_s"]),
        "warm_wall": ratio(ref_wall, warm and warm["wall_s"]),
        "scaling_2gpu": ratio(thr.get(2, {}).get("ncflow_samples_per_s"), one),
    }
    if n > 2:
        ratios[f"scaling_{n}gpu"] = ratio(thr.get(n, {}).get("ncflow_samples_per_s"), one)
    for g in counts[1:]:
        ratios[f"train_{g}gpu_vs_reference"] = ratio(
            thr[g]["ncflow_samples_per_s"], thr[g]["reference_samples_per_s"]
        )
    vae_rates = {g: vae(out, g) for g in counts}
    if n > 1:
        ratios[f"vae_scaling_{n}gpu"] = ratio(vae_rates.get(n), vae_rates.get(1))
    report = {
        "date": str(date.today()), "gpu": read(out / "gpu.txt"), "versions": read(out / "versions.txt"),
        "commit": read(out / "commit.txt"), "target_hr": args.target, "gpus": n,
        "throughput": thr, "wall": walls, "vae_users_per_s": vae_rates, "ratios": ratios,
        "startup_s": {run: w and w["ready_process_s"] for run, w in walls.items() if run.startswith("ncflow_1_")},
    }  # fmt: skip
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(ratios))
    print(f"start-up before the first step (s): {report['startup_s']}")
    for g, t in thr.items():
        print(
            f"{g} GPU(s): ncflow {fmt(t['ncflow_samples_per_s'])} samples/s, reference {fmt(t['reference_samples_per_s'])}"
        )
    for name, w in walls.items():
        print(f"wall {name}: {w}")
    print(f"VAE-CF users/s: {vae_rates}")
    return 0


def fmt(x: float | None) -> str:
    return f"{x / 1e6:.1f}M" if x else "-"


if __name__ == "__main__":
    sys.exit(main())
