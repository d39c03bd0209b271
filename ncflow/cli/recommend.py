"""`ncflow recommend`: top-k items from a registered model, for one user (NCF, EASE), for a new user's
items (Mult-VAE and EASE fold-in), or for every user (`--all`, ncflow/cli/recommend_all.py).
`--model best` is the dataset's best model across families (ncflow/best.py)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path

from ncflow.cli import recommend_all
from ncflow.cli.data import DEFAULT_DATA_DIR
from ncflow.errors import NcflowError


def item_ids(text: str) -> list[str]:
    """Original item ids separated by commas, as the model's data has them: 1,32,260 or SKU-1,SKU-7."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(
            f"{text!r}: no item ids given (ids separated by commas, e.g. 1,32,260)"
        )
    return ids


def champion_dataset(registry_dir: Path, model: str) -> str:
    """The dataset when --dataset is left out: the only one with a `model` champion (or best) in the registry."""
    from ncflow import best, registry

    alias = best.ALIAS if model == best.BEST else registry.CHAMPION
    found = sorted(
        p.name for p in registry.model_dir(registry_dir, model, "").glob("*") if (p / alias).is_file()
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise NcflowError(
            f"no {model} champion in {registry_dir}: train one with `ncflow train {model} --dataset NAME`"
        )
    raise NcflowError(f"{model} champions exist for {', '.join(found)}: choose one with --dataset")


def resolve_model(registry_dir: Path, model: str, dataset: str, version: str) -> tuple[str, Path]:
    """(the registry name, the version's folder): `best` becomes the model it names."""
    from ncflow import best, registry

    if model != best.BEST:
        return model, registry.resolve(registry_dir, model, dataset, version)
    if version != "champion":
        raise NcflowError("--model best names one version already: leave out --version")
    return best.resolve_best(registry_dir, dataset)


def check_who(model: str, args: argparse.Namespace) -> None:
    """NCF scores a known user (--user); Mult-VAE folds in items (--items); EASE takes either."""
    from ncflow.specs import spec

    kind = spec(model).package
    if kind == "ncf":
        if args.user is None:
            raise NcflowError(
                f"--model {model} recommends for a known user: give --user ID (or use --model vae-cf --items)"
            )
        if args.items is not None:
            raise NcflowError("--items is fold-in, for --model vae-cf or ease; ncf takes --user")
    elif kind == "ease":
        if (args.user is None) == (args.items is None):
            raise NcflowError(
                f"--model {model} takes --user ID (a known user) or --items ID,ID,... (fold-in)"
            )
    elif args.items is None:
        raise NcflowError(f"--model {model} folds in a user's items: give --items ID,ID,...")
    elif args.user is not None:
        raise NcflowError(f"--model {model} takes --items (the user's liked items), not --user")


def run(args: argparse.Namespace) -> None:
    from models.common.ids import as_id
    from ncflow import registry
    from ncflow.data.sources import dataset_label
    from ncflow.specs import spec

    if args.k <= 0:
        raise NcflowError(f"-k must be at least 1, got {args.k}")
    registry_dir = Path(args.registry_dir)
    dataset = dataset_label(args.dataset) if args.dataset else champion_dataset(registry_dir, args.model)
    if args.all:
        recommend_all.run(args, dataset)
        return
    if args.out is not None:
        raise NcflowError("--out is for --all (every user); one user's answer is printed")
    model, path = resolve_model(registry_dir, args.model, dataset, args.version)
    check_who(model, args)
    bundles = importlib.import_module(f"models.{spec(model).package}.bundle")
    with registry.in_use(path):  # no pruner (ncflow/retention.py) removes it while it loads
        bundle = bundles.load_bundle(path)
    if args.user is not None:  # a known user: NCF or EASE (check_who refused the rest)
        user = as_id(args.user, bundle.user_index)
        try:
            items = bundles.recommend(bundle, user, args.k)
        except KeyError as err:
            raise NcflowError(str(err.args[0])) from None
        who, asked = f"user {user}", {"user": user}
    else:  # fold-in: Mult-VAE or EASE
        given = [as_id(i, bundle.item_index) for i in args.items]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                items = bundles.recommend_foldin(bundle, given, args.k)
            except ValueError as err:
                raise NcflowError(str(err)) from None
        for warning in caught:
            print(f"ncflow: warning: {warning.message}", file=sys.stderr)
        known = sum(1 for i in given if i in bundle.item_index)
        who, asked = f"a new user with {known} known item(s)", {"given_items": given}
    if args.json:
        print(json.dumps({**asked, "model": str(path), "items": items}))
        return
    print(f"{who}, {model} {path}")
    for rank, item in enumerate(items, 1):
        print(f"{rank:3d}  {str(item['item']):>8}  {item['score']:8.3f}  {item['title'] or ''}")


def add_parser(sub) -> None:
    from ncflow.specs import SPECS

    rec = sub.add_parser(
        "recommend", help="top-k items from the registry's champion, for a user or for given items"
    )
    rec.add_argument("--dataset", help="the model's dataset (default: the only one with a champion)")
    rec.add_argument("--user", help="ncf, ease: an original user id (a number or a string, as in your data)")
    rec.add_argument(
        "--items",
        type=item_ids,
        help="vae-cf, ease: a new user's liked items, original ids: 1,32,260 or SKU-1,SKU-7",
    )
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument(
        "--model",
        default="ncf",
        choices=[*SPECS, "best"],
        help="best: the dataset's best model across families",
    )
    rec.add_argument("--version", default="champion", help="champion | latest | N")
    rec.add_argument("--registry-dir", default="registry")
    rec.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    rec.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="--all, vae-cf: the processed data")
    recommend_all.add_arguments(rec)
    rec.set_defaults(func=run)
