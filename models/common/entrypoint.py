"""The command line of a trainer: flags from its config dataclass, then train inside the process group."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.common.config_cli import add_config_flags, config_from_args
from models.common.defaults import resolve_defaults
from models.common.distributed import Dist, setup_distributed, teardown_distributed
from models.common.lifetime import DIE_WITH_PARENT, die_with_parent

NOT_GIVEN = object()


def run_trainer(
    prog: str,
    description: str,
    config_cls: type,
    train: Callable[..., dict],
    data_help: str,
    argv=None,
    *,
    config_dir: str,
    batch_units: Callable[[dict, dict[str, Any]], int],
) -> int:
    """Parse the flags, fill the rest with the dataset's defaults (models/common/defaults.py), train."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data", required=True, type=Path, help=data_help)
    parser.add_argument("--out", required=True, type=Path, help="checkpoints and the bundle go here")
    add_config_flags(parser, config_cls)
    # argparse fills in a default only where the namespace has no value: what is still NOT_GIVEN
    # afterwards was not on the command line.
    names = [f.name for f in dataclasses.fields(config_cls)]
    args = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names, NOT_GIVEN)))
    if "TORCHELASTIC_RUN_ID" in os.environ or os.environ.get(DIE_WITH_PARENT) == "1":
        die_with_parent()  # under torchrun the parent is its agent; under ncflow.launch, the flow run
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not NOT_GIVEN}
    rest, note = resolve_defaults(config_cls, config_dir, args.data, given, batch_units)
    if note and int(os.environ.get("RANK", "0")) == 0:
        print(note, file=sys.stderr, flush=True)
    try:
        cfg = config_from_args(config_cls, argparse.Namespace(**given, **rest))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    d: Dist = setup_distributed(cfg.device)
    try:
        train(cfg, args.data, args.out, d)
    finally:
        teardown_distributed()
    return 0


def exit_now(code: int) -> None:
    """End a trainer process that has written everything: skip the interpreter's teardown of CUDA,
    Triton and thousands of modules (about a second of every run on the GPU machine)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
