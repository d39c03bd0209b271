"""A sweep's search space: which training parameters vary, over what, drawn how; validated by pydantic.

    configs/ncf/sweep.yaml, configs/vaecf/sweep.yaml:
      method: random          # or grid (every combination of the listed values, in order)
      seed: 0                 # random draws are a function of (seed, trial number)
      fixed: {epochs: 10}     # every trial's settings on top of the dataset's YAML defaults
      space:
        lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range (random only)
        batch_size: [65536, 262144, 1048576]          # a list of values

Each trial is these values on top of the dataset's training defaults (configs/<model>/<dataset>.yaml),
checked by the model's own parameter class, so a bad value fails before any trial starts.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from configs import Strict, validation_message
from ncflow.errors import NcflowError

Value = int | float | str | bool


class Range(Strict):
    low: float
    high: float
    log: bool = False  # uniform in log space: learning rates
    integer: bool = False  # round to an int: sizes

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def draw(self, u: float) -> Value:
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return int(round(value)) if self.integer else value


class SweepSpace(Strict):
    method: Literal["grid", "random"] = "random"
    seed: int = Field(default=0, ge=0)
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, list[Value] | Range] = Field(min_length=1)

    @model_validator(mode="after")
    def _grid_needs_lists(self) -> SweepSpace:
        for name, values in self.space.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"space.{name}: an empty list")
            if self.method == "grid" and isinstance(values, Range):
                raise ValueError(f"space.{name}: a grid needs a list of values, not a range")
        return self

    def trials(self, n: int) -> list[dict[str, Value]]:
        """`n` parameter sets: the grid's first n combinations, or n random draws."""
        if n < 1:
            raise NcflowError(f"--trials must be at least 1, got {n}")
        names = list(self.space)
        if self.method == "grid":
            grid = list(itertools.product(*(self.space[name] for name in names)))
            if n > len(grid):
                raise NcflowError(f"--trials {n}: the grid has only {len(grid)} combinations")
            return [dict(zip(names, combo)) for combo in grid[:n]]
        rng = np.random.default_rng(self.seed)
        trials = []
        for _ in range(n):
            trial: dict[str, Value] = {}
            for name in names:
                values = self.space[name]
                u = float(rng.random())
                trial[name] = values.draw(u) if isinstance(values, Range) else values[int(u * len(values))]
            trials.append(trial)
        return trials


def load_space(path: Path, fields: set[str]) -> SweepSpace:
    """The space in `path`; every varied or fixed name must be one of `fields` (the flow's parameters)."""
    path = Path(path)
    if not path.is_file():
        raise NcflowError(f"{path}: no such sweep space file")
    try:
        space = SweepSpace(**(yaml.safe_load(path.read_text()) or {}))
    except ValidationError as err:
        raise NcflowError(f"{path}: {validation_message(err)}") from None
    unknown = sorted((set(space.space) | set(space.fixed)) - fields)
    if unknown:
        raise NcflowError(f"{path}: {', '.join(unknown)} not training parameters of this model")
    return space
