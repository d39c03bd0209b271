"""`ncflow train MODEL --dataset D [flags]`: a training flow run locally (a temporary Prefect server if
none is set); one flag per field of the model's parameter class; the last line printed is JSON."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import types
import typing

from ncflow.errors import NcflowError


def run(args: argparse.Namespace) -> None:
    from ncflow.specs import spec

    model = spec(args.model)
    fields = [name for name in model.params.model_fields if name != "dataset"]
    given = {name: getattr(args, name) for name in fields}
    params = model.params.for_dataset(args.dataset, **given)  # refuse bad values before starting a server
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline machines: no phoning home
    from flows.training import check_gpus

    if params.nodes == 1:  # several nodes: each host's GPUs are checked there (ncflow/nodes.py)
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


def add_train_flags(parser: argparse.ArgumentParser, params: type) -> None:
    """One flag per field of `params` (a configs.train.TrainParams), default None (= the dataset's YAML default)."""
    for name, field in params.model_fields.items():
        if name == "dataset":
            continue
        flag, kind = "--" + name.replace("_", "-"), field.annotation
        if isinstance(kind, types.UnionType):  # `int | None` (None: the preset's or the data-sized value)
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        options: dict = {
            "default": None,
            "help": (field.description or f"(dataset default; class default {field.default})").replace(
                "%", "%%"
            ),
        }
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), **options)
        elif typing.get_origin(kind) is tuple:
            number = float if float in typing.get_args(kind) else int
            parser.add_argument(
                flag, type=lambda text, n=number: [n(p) for p in text.split(",") if p.strip()], **options
            )
        else:
            base = next((t for t in (int, float) if kind is t), str)
            parser.add_argument(flag, type=base, **options)


def add_parser(sub) -> None:
    from ncflow.specs import SPECS

    train = sub.add_parser("train", help="run a training flow (a temporary Prefect server if none is set)")
    listed = [name for name, spec in SPECS.items() if spec.listed]
    models = train.add_subparsers(dest="model", required=True, metavar="{" + ",".join(listed) + "}")
    for model in (spec for spec in SPECS.values() if spec.listed):
        one = models.add_parser(model.name, help=f"the {model.flow} flow; champion rule: {model.metric}")
        one.add_argument(
            "--dataset", required=True, help="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a file"
        )
        add_train_flags(one, model.params)
        one.set_defaults(func=run)
