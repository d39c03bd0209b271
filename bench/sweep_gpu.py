"""A sweep's trials on one GPU machine, several at a time, without Prefect or Dask (neither is installed there).

    python3 bench/sweep_gpu.py vae-cf --dataset ml-100k --data DIR --space configs/vaecf/sweeps/ml-100k-gpu.yaml \
        --trials 40 --parallel 8 --out OUT

The trials are exactly `ncflow sweep`'s: the same space file (configs.sweep), each drawn trial checked by
the model's parameter class on top of the dataset's YAML, the same trainer command
(ncflow.launch.trainer_args), ranked by the same validation key (ncflow.sweep.rank_rows). Only the
orchestration differs: a thread pool of trainer subprocesses sharing the one GPU instead of one Dask
worker per GPU, because small data (ml-100k, ml-1m) leaves a H200 idle with a trial at a time.
Test metrics are printed for the winner only, after it was chosen on validation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.sweep import load_space  # noqa: E402
from ncflow.launch import TrainerFailed, run_trainer, trainer_args  # noqa: E402
from ncflow.specs import spec  # noqa: E402
from ncflow.sweep import rank_rows  # noqa: E402


def run_trial(package: str, data: Path, out: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The trainer's `done` event (plus wall seconds), its events and stderr kept in `out`; TrainerFailed
    (with its stderr tail) if it failed."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "events.jsonl", "w") as events, open(out / "stderr.log", "w") as stderr:
        run = run_trainer(
            [sys.executable, *trainer_args(package, data, out, config)],
            on_event=lambda event: events.write(json.dumps(event) + "\n"),
            on_line=lambda line: stderr.write(line + "\n"),
        )
    return {**run.done, "seconds": run.wall_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", required=True, help="the YAML preset the trials start from")
    parser.add_argument("--data", required=True, type=Path, help="the processed folder (ncflow data ...)")
    parser.add_argument("--space", required=True, type=Path)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--gpus", type=int, default=1, choices=[0, 1], help="0: the trials on CPUs (a check)")
    args = parser.parse_args()

    what = spec(args.model)
    search = load_space(args.space, set(what.params.model_fields))
    drawn = search.trials(args.trials)
    params = [
        what.params.for_dataset(args.dataset, **{**search.fixed, **t, "gpus": args.gpus}) for t in drawn
    ]
    what = what.for_params(params[0])
    configs = [p.train_config() for p in params]

    def one(n: int) -> tuple[dict | None, str | None]:
        try:
            summary = run_trial(what.package, args.data, args.out / f"trial-{n}", configs[n])
            print(f"trial {n} done in {summary['seconds']:.1f} s", flush=True)
            return summary, None
        except TrainerFailed as err:
            print(f"trial {n} failed: {err}", flush=True)
            return None, str(err)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(one, range(len(drawn))))
    summaries, errors = [r[0] for r in results], [r[1] for r in results]
    rows, key, what_it_measures = rank_rows(what.name, drawn, summaries, errors)
    best = rows[0]["trial"] if rows and rows[0]["rank"] else None
    # The winner's whole summary: its test metrics are read only now, after validation chose it.
    test = {
        k: v for k, v in (summaries[best] if best is not None else {}).items() if isinstance(v, int | float)
    }
    report = {
        "model": what.name, "dataset": args.dataset, "data": str(args.data), "space": str(args.space),
        "ranked_by": key, "measured_on": what_it_measures, "seconds": round(time.perf_counter() - start, 1),
        "best_trial": best, "best_config": configs[best] if best is not None else None,
        "best_test": test, "table": rows,
    }  # fmt: skip
    (args.out / "sweep.json").write_text(json.dumps(report, indent=1, default=str))
    names = [k for k in rows[0] if k not in ("worker",)] if rows else []
    print(f"ranked by {key} ({what_it_measures}); {len(drawn)} trials in {report['seconds']} s")
    print("| " + " | ".join(names) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in names) + " |")
    print(f"best trial {best}: {json.dumps(test)}")


if __name__ == "__main__":
    main()
