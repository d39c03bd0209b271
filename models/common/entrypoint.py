"""The command line of a trainer: flags from its config dataclass, then train inside the process group."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from models.common.config_cli import add_config_flags, config_from_args
from models.common.distributed import Dist, setup_distributed, teardown_distributed
from models.common.lifetime import DIE_WITH_PARENT, die_with_parent


def run_trainer(
    prog: str, description: str, config_cls: type, train: Callable[..., dict], data_help: str, argv=None
) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data", required=True, type=Path, help=data_help)
    parser.add_argument("--out", required=True, type=Path, help="checkpoints and the bundle go here")
    add_config_flags(parser, config_cls)
    args = parser.parse_args(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ or os.environ.get(DIE_WITH_PARENT) == "1":
        die_with_parent()  # under torchrun the parent is its agent; under ncflow.launch, the flow run
    try:
        cfg = config_from_args(config_cls, args)
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
