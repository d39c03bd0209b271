"""The `ncflow` command.

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
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ncflow.errors import NcflowError

DEFAULT_DATA_DIR = Path("data")


def cmd_synth(args: argparse.Namespace) -> None:
    from ncflow.data.synth import write_synthetic

    out = write_synthetic(args.preset, Path(args.out), seed=args.seed)
    print(out)


def cmd_data(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from configs import PreprocessConfig, validation_message
    from ncflow.data.preprocess import preprocess, read_manifest
    from ncflow.data.sources import dataset_label, obtain_raw

    overrides = {"protocol": args.protocol, "seed": args.seed}
    if args.test_negatives is not None:
        overrides["test_negatives"] = args.test_negatives
    if args.distinct_negatives:
        overrides["distinct_negatives"] = True
    if args.validation:
        overrides["validation"] = True
    columns = {k: v for k, v in (("user", args.user_col), ("item", args.item_col)) if v}
    columns |= {k: v for k, v in (("rating", args.rating_col), ("timestamp", args.timestamp_col)) if v}
    if columns:
        overrides["columns"] = columns
    try:
        config = PreprocessConfig(**overrides)
    except ValidationError as err:
        raise NcflowError(f"bad preprocessing setting: {validation_message(err)}") from None

    start = time.perf_counter()
    raw = obtain_raw(args.dataset, Path(args.data_dir), args.source)
    fetch_seconds = time.perf_counter() - start
    out = preprocess(dataset_label(args.dataset), raw, Path(args.data_dir), config, device=args.device)
    manifest = read_manifest(out)
    seconds = {"fetch": round(fetch_seconds, 3), **manifest.get("seconds", {})}
    print(f"dataset      {manifest['dataset']} ({manifest['protocol']}, {manifest['backend']})")
    for name, value in manifest["counts"].items():
        print(f"{name.replace('_', ' '):<16} {value:,}")
    print("seconds      " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(out)


def cmd_train(args: argparse.Namespace) -> None:
    from ncflow.specs import spec

    model = spec(args.model)
    fields = [name for name in model.params.model_fields if name != "dataset"]
    given = {name: getattr(args, name) for name in fields}
    params = model.params.for_dataset(args.dataset, **given)  # refuse bad values before starting a server
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no phoning home
    from flows.training import check_gpus

    check_gpus(params.gpus)
    flow_function = model.flow_function()
    accepted = set(inspect.signature(flow_function.fn).parameters)
    passed = {k: v for k, v in given.items() if v is not None}
    if unknown := sorted(set(passed) - accepted):  # a field the flow does not expose as a parameter
        flags = ", ".join("--" + name.replace("_", "-") for name in unknown)
        raise NcflowError(f"{flags}: not a parameter of the {model.flow} flow")
    try:
        result = flow_function(dataset=args.dataset, **passed)
    except NcflowError:
        raise
    except Exception as err:  # the flow run failed; its logs above say where
        raise NcflowError(f"the {model.flow} flow run failed: {err}") from None
    print(json.dumps(result))


def cmd_sweep(args: argparse.Namespace) -> None:
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


def add_train_flags(parser: argparse.ArgumentParser, params: type) -> None:
    """One flag per field of `params` (a configs.train.TrainParams), default None (= the dataset's YAML default)."""
    import typing

    for name, field in params.model_fields.items():
        if name == "dataset":
            continue
        flag, kind = "--" + name.replace("_", "-"), field.annotation
        options: dict = {
            "default": None,
            "help": field.description or f"(dataset default; class default {field.default})",
        }
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), **options)
        elif typing.get_origin(kind) is tuple:
            parser.add_argument(
                flag, type=lambda text: [int(p) for p in text.split(",") if p.strip()], **options
            )
        else:
            base = next((t for t in (int, float) if kind is t), str)
            parser.add_argument(flag, type=base, **options)


def item_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected item ids separated by commas, e.g. 1,32,260"
        ) from None
    if not ids:
        raise argparse.ArgumentTypeError("no item ids given")
    return ids


def champion_dataset(registry_dir: Path, model: str) -> str:
    """The dataset when --dataset is left out: the only one with a `model` champion in the registry."""
    from ncflow import registry

    found = sorted(
        p.name
        for p in registry.model_dir(registry_dir, model, "").glob("*")
        if (p / registry.CHAMPION).is_file()
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise NcflowError(
            f"no {model} champion in {registry_dir}: train one with `ncflow train {model} --dataset NAME`"
        )
    raise NcflowError(f"{model} champions exist for {', '.join(found)}: choose one with --dataset")


def cmd_recommend_all(args: argparse.Namespace, dataset: str) -> None:
    """Every user's top-k: one Parquet part per Dask worker, or one file for an --out ending in .parquet."""
    from ncflow.batch.cluster import dask_client
    from ncflow.batch.locate import locate_job
    from ncflow.batch.recommend_all import recommend_all

    if args.user is not None or args.items is not None:
        raise NcflowError("--all scores every user: leave out --user and --items")
    if args.out is None:
        raise NcflowError("--all needs --out: a folder (one Parquet part per worker) or a .parquet file")
    if args.k <= 0:
        raise NcflowError(f"-k must be at least 1, got {args.k}")
    if args.users_per_chunk is not None and args.users_per_chunk < 1:
        raise NcflowError(f"--users-per-chunk must be at least 1, got {args.users_per_chunk}")
    job = locate_job(
        args.model, dataset, args.version, Path(args.registry_dir), Path(args.data_dir), args.device,
        chunk=args.users_per_chunk,
    )  # fmt: skip
    start = time.perf_counter()
    with dask_client(args.workers, args.scheduler, args.device, args.connect_timeout) as client:
        result = recommend_all(client, job, args.k, Path(args.out))
    seconds = time.perf_counter() - start
    print(
        f"{result['rows']:,} rows: {result['users']:,} users x top-{args.k} of {result['items']:,} items, "
        f"{result['parts']} part(s), {seconds:.1f} s, from {job.bundle}"
    )
    print(result["path"])


def cmd_recommend(args: argparse.Namespace) -> None:
    from ncflow import registry
    from ncflow.data.sources import dataset_label

    registry_dir = Path(args.registry_dir)
    dataset = dataset_label(args.dataset) if args.dataset else champion_dataset(registry_dir, args.model)
    if args.all:
        cmd_recommend_all(args, dataset)
        return
    if args.out is not None:
        raise NcflowError("--out is for --all (every user); one user's answer is printed")
    if args.model == "ncf":
        if args.user is None:
            raise NcflowError(
                "--model ncf recommends for a known user: give --user ID (or use --model vae-cf --items)"
            )
        if args.items is not None:
            raise NcflowError("--items is fold-in, for --model vae-cf; ncf takes --user")
    elif args.items is None:
        raise NcflowError(f"--model {args.model} folds in a user's items: give --items ID,ID,...")
    elif args.user is not None:
        raise NcflowError(f"--model {args.model} takes --items (the user's liked items), not --user")
    path = registry.resolve(registry_dir, args.model, dataset, args.version)
    if args.model == "ncf":
        from models.ncf.bundle import load_bundle, recommend

        try:
            items = recommend(load_bundle(path), args.user, args.k)
        except KeyError as err:
            raise NcflowError(str(err.args[0])) from None
        who, asked = f"user {args.user}", {"user": args.user}
    else:
        import warnings

        from models.vaecf.bundle import load_bundle, recommend_foldin

        bundle = load_bundle(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                items = recommend_foldin(bundle, args.items, args.k)
            except ValueError as err:
                raise NcflowError(str(err)) from None
        for warning in caught:
            print(f"ncflow: warning: {warning.message}", file=sys.stderr)
        known = sum(1 for i in args.items if i in bundle.item_index)
        who, asked = f"a new user with {known} known item(s)", {"given_items": args.items}
    if args.json:
        print(json.dumps({**asked, "model": str(path), "items": items}))
        return
    print(f"{who}, {args.model} {path}")
    for rank, item in enumerate(items, 1):
        print(f"{rank:3d}  {item['item']:>8}  {item['score']:8.3f}  {item['title'] or ''}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncflow", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser(
        "synth", help="write a synthetic MovieLens-like dataset (ml-20m's ratings.csv format)"
    )
    synth.add_argument("preset", help="tiny | ml1m | ml20m")
    synth.add_argument("--out", required=True, help="folder to write (replaced whole)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=cmd_synth)

    data = sub.add_parser("data", help="download (or read) and preprocess a dataset")
    data.add_argument(
        "dataset", help="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a CSV/Parquet file"
    )
    data.add_argument("--source", help="a mirror URL, a local archive, or a folder holding the ratings file")
    data.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where raw and processed data live")
    data.add_argument("--protocol", default="ncf", choices=["ncf", "vaecf"])
    data.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="gpu: CuPy")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--test-negatives", type=int, help="per user (default 100)")
    data.add_argument("--distinct-negatives", action="store_true", help="no repeats, positive excluded")
    data.add_argument(
        "--validation", action="store_true", help="ncf: hold out each user's second-latest item as validation"
    )
    data.add_argument("--user-col", help="user column of a local file (default 'user')")
    data.add_argument("--item-col", help="item column of a local file (default 'item')")
    data.add_argument("--rating-col", help="rating column of a local file (optional)")
    data.add_argument("--timestamp-col", help="timestamp column of a local file (optional)")
    data.set_defaults(func=cmd_data)

    from ncflow.specs import SPECS

    train = sub.add_parser("train", help="run a training flow (a temporary Prefect server if none is set)")
    models = train.add_subparsers(dest="model", required=True, metavar="{" + ",".join(SPECS) + "}")
    for model in SPECS.values():
        one = models.add_parser(model.name, help=f"the {model.flow} flow; champion rule: {model.metric}")
        one.add_argument(
            "--dataset", required=True, help="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a file"
        )
        add_train_flags(one, model.params)
        one.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="trials on Dask workers (one per GPU); the best is registered")
    sweep.add_argument("model", choices=list(SPECS))
    sweep.add_argument("--dataset", required=True)
    sweep.add_argument("--trials", type=int, default=4)
    sweep.add_argument("--gpus", type=int, default=0, help="one trial per GPU at a time; 0: CPU processes")
    sweep.add_argument("--workers", type=int, help="CPU processes when --gpus 0 (default 2)")
    sweep.add_argument("--space", help="the search space YAML (default configs/<model>/sweep.yaml)")
    sweep.add_argument(
        "--epochs", type=int, help="every trial's epochs (default: the space's, then the dataset's)"
    )
    sweep.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    sweep.add_argument("--runs-dir", default="runs")
    sweep.add_argument("--registry-dir", default="registry")
    sweep.set_defaults(func=cmd_sweep)

    rec = sub.add_parser(
        "recommend", help="top-k items from the registry's champion, for a user or for given items"
    )
    rec.add_argument("--dataset", help="the model's dataset (default: the only one with a champion)")
    rec.add_argument("--user", type=int, help="ncf: an original user id")
    rec.add_argument(
        "--items", type=item_ids, help="vae-cf: a new user's liked items, original ids: 1,32,260"
    )
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument("--model", default="ncf", choices=list(SPECS))
    rec.add_argument("--version", default="champion", help="champion | latest | N")
    rec.add_argument("--registry-dir", default="registry")
    rec.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    rec.add_argument("--all", action="store_true", help="every user's top-k, written as Parquet to --out")
    rec.add_argument("--out", help="--all: a folder (part-00000.parquet, ...) or a file ending in .parquet")
    rec.add_argument("--workers", type=int, help="--all: Dask workers (default: every GPU, or 1 CPU process)")
    rec.add_argument("--scheduler", help="--all: join this Dask cluster (tcp://host:8786) instead")
    rec.add_argument(
        "--connect-timeout", type=float, default=10.0, help="--all: seconds to reach --scheduler"
    )
    rec.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="--all: where to score"
    )
    rec.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="--all, vae-cf: the processed data")
    rec.add_argument(
        "--users-per-chunk", type=int, help="--all: users per forward pass (default: sized to memory)"
    )
    rec.set_defaults(func=cmd_recommend)
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


if __name__ == "__main__":
    sys.exit(main())
