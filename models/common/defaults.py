"""A trainer run by hand takes the defaults a flow would use for its dataset.

The dataclass defaults are NVIDIA's ml-20m recipe: on a small dataset a 2^20 batch is one step per
epoch and NeuMF ends below item popularity. So `python -m models.ncf.train --data DIR` reads the
dataset's name from DIR/manifest.json and, precedence lowest first:
- the trainer's dataclass defaults;
- `configs/<model>/<dataset>.yaml`, the flows' per-dataset defaults, when the dataset has one;
  otherwise a batch size that gives at least MIN_STEPS steps per epoch (said on stderr);
- the flags given on the command line.

YAML keys that are not the trainer's settings (preprocessing, GPUs) are left to the flows. Only
pyyaml is needed: the configs package itself (pydantic) is never imported.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MIN_STEPS = 20  # steps per epoch below which Adam barely moves in an epoch (the issue 9 finding)


def preset_file(config_dir: str, dataset: str) -> Path | None:
    """`configs/<config_dir>/<dataset>.yaml` if it exists, found without importing `configs`."""
    spec = importlib.util.find_spec("configs")
    if spec is None or not spec.submodule_search_locations or "/" in dataset:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / config_dir / f"{dataset}.yaml"
    return path if path.is_file() else None


def largest_batch(units: int, default: int) -> int:
    """The largest power of two <= `default` that cuts `units` into at least MIN_STEPS steps."""
    batch = 1
    while batch * 2 <= min(default, units // MIN_STEPS):
        batch *= 2
    return batch


def resolve_defaults(
    config_cls: type,
    config_dir: str,
    data_dir: Path,
    given: dict[str, Any],
    batch_units: Callable[[dict, dict[str, Any]], int],
) -> tuple[dict[str, Any], str | None]:
    """(values for the fields not in `given`, a line saying where they came from, or None).

    `batch_units(manifest, values)`: what a batch counts for this model (NCF: samples, positives x
    (1 + negatives); VAE-CF: users), with `values` the settings resolved so far.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {name: field.default for name, field in fields.items()}
    manifest_path = Path(data_dir) / "manifest.json"
    if not manifest_path.is_file():  # the trainer says what is wrong with DIR
        return {k: v for k, v in values.items() if k not in given}, None
    manifest = json.loads(manifest_path.read_text())
    dataset = str(manifest.get("dataset", ""))
    preset = preset_file(config_dir, dataset)
    if preset is not None:
        loaded = yaml.safe_load(preset.read_text()) or {}
        taken = {k: tuple(v) if isinstance(v, list) else v for k, v in loaded.items() if k in fields}
        values.update(taken)
        chosen = {k: v for k, v in taken.items() if k not in given}
        note = None  # every setting given (as the flows do): nothing to say
        if chosen:
            note = f"defaults for {dataset} from configs/{config_dir}/{preset.name}: " + ", ".join(
                f"{k}={v}" for k, v in chosen.items()
            )
    elif "batch_size" in fields and "batch_size" not in given:  # EASE has no batches
        units = batch_units(manifest, {**values, **given})
        batch = largest_batch(units, values["batch_size"])
        note = (
            f"no configs/{config_dir}/{dataset}.yaml for dataset {dataset!r}: batch size {batch} "
            f"({units // batch} steps per epoch; the default {values['batch_size']} gives "
            f"{max(1, units // values['batch_size'])}); pass --batch-size to choose"
        )
        values["batch_size"] = batch
    else:
        note = None
    return {k: v for k, v in values.items() if k not in given}, note
