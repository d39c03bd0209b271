"""`ncflow synth PRESET --out DIR`: a learnable MovieLens-like dataset, or a shop-shaped log, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> None:
    if args.preset == "retail":  # a shop's log in its own shape, not MovieLens's
        from ncflow.data.synth_retail import write_retail

        print(write_retail(Path(args.out), seed=args.seed))
        return
    from ncflow.data.synth import write_synthetic

    print(write_synthetic(args.preset, Path(args.out), seed=args.seed))


def add_parser(sub) -> None:
    synth = sub.add_parser(
        "synth",
        help="write a synthetic MovieLens-like dataset (ml-20m's ratings.csv format), or a shop's log",
    )
    synth.add_argument(
        "preset", help="tiny | ml1m | ml20m | retail (online_retail.csv: invoice lines, string ids)"
    )
    synth.add_argument("--out", required=True, help="folder to write (replaced whole)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run)
