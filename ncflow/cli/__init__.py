"""The `ncflow` command: one module per subcommand, each with `add_parser(sub)` and its `run(args)`.

    ncflow synth tiny --out data/raw/synth-tiny           # a learnable MovieLens-like dataset, offline
    ncflow data ml-100k --source ../shared/data/ml-100k   # download (or read) and preprocess
    ncflow data synth-ml1m --protocol vaecf
    ncflow train ncf --dataset synth-tiny                 # the ncf-train flow, on a temporary Prefect server
    ncflow train ncf --dataset ml-20m --gpus 8            # the last output line is JSON: metrics, bundle
    ncflow train vae-cf --dataset synth-tiny              # the vae-cf-train flow (Mult-VAE)
    ncflow recommend --dataset synth-tiny --user 42 -k 10 # from the registry's champion
    ncflow recommend --model vae-cf --items 1,32,260 -k 10  # fold-in: a new user's items, no retraining
    ncflow recommend --all --dataset synth-tiny -k 10 --out recs/ --workers 2  # every user, Dask, Parquet
    ncflow sweep ncf --dataset synth-tiny --trials 4      # trials on Dask workers; the best is registered

Problems a user can fix print one line, `ncflow: error: ...`, and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ncflow.cli import data, recommend, sweep, synth, train
from ncflow.errors import NcflowError

COMMANDS = (synth, data, train, sweep, recommend)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncflow", description="Train, register and serve recommender models through Prefect flows."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    try:
        args.func(args)
    except NcflowError as err:
        print(f"ncflow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ncflow: interrupted", file=sys.stderr)
        return 130
    return 0
