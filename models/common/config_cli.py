"""Command-line flags generated from a frozen dataclass config: one flag per field, no repetition."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, get_type_hints


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    hints = get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        default = field.default
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif "tuple" in str(kind):
            parse = float_tuple if "float" in str(kind) else int_tuple
            parser.add_argument(
                flag, type=parse, default=default, help=f"comma-separated (default {default})"
            )
        else:
            parser.add_argument(
                flag, type=kind if kind in (int, float) else str, default=default, help=f"(default {default})"
            )


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def int_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def float_tuple(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())
