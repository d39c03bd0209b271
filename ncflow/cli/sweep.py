"""`ncflow sweep MODEL --dataset D --trials N`: trials on Dask workers (one per GPU); the best is registered."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ncflow.cli.data import DEFAULT_DATA_DIR
from ncflow.errors import NcflowError


def run(args: argparse.Namespace) -> None:
    from ncflow.specs import spec

    what = spec(args.model)
    if args.trials < 1:
        raise NcflowError(f"--trials must be at least 1, got {args.trials}")
    if args.gpus < 0 or (args.workers is not None and args.workers < 1):
        raise NcflowError("--gpus must be >= 0 and --workers >= 1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from configs.sweep import load_space
    from flows.sweep import run_sweep
    from flows.training import check_gpus

    check_gpus(args.gpus)
    space = Path(args.space) if args.space else what.params.CONFIG_DIR / "sweep.yaml"
    load_space(space, set(what.params.model_fields)).trials(
        args.trials
    )  # refuse a bad space before a server starts
    paths = {"data_dir": args.data_dir, "runs_dir": args.runs_dir, "registry_dir": args.registry_dir}
    paths["source"] = args.source
    try:
        result = run_sweep(
            args.model,
            args.dataset,
            args.trials,
            args.gpus,
            args.workers,
            space=str(space),
            epochs=args.epochs,
            **paths,
        )
    except NcflowError:
        raise
    except Exception as err:  # the flow run failed; its logs above say where
        raise NcflowError(f"the sweep flow run failed: {err}") from None
    print(json.dumps(result))


def add_parser(sub) -> None:
    from ncflow.specs import SPECS

    sweep = sub.add_parser("sweep", help="trials on Dask workers (one per GPU); the best is registered")
    sweep.add_argument("model", choices=[name for name, model in SPECS.items() if model.listed])
    sweep.add_argument("--dataset", required=True)
    sweep.add_argument("--trials", type=int, default=4)
    sweep.add_argument("--gpus", type=int, default=0, help="one trial per GPU at a time; 0: CPU processes")
    sweep.add_argument("--workers", type=int, help="CPU processes when --gpus 0 (default 2)")
    sweep.add_argument("--space", help="the search space YAML (default configs/<model>/sweep.yaml)")
    sweep.add_argument(
        "--epochs", type=int, help="every trial's epochs (default: the space's, then the dataset's)"
    )
    sweep.add_argument("--source", help="a mirror URL, a local archive, or a folder holding the ratings file")
    sweep.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    sweep.add_argument("--runs-dir", default="runs")
    sweep.add_argument("--registry-dir", default="registry")
    sweep.set_defaults(func=run)
