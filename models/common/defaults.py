"""A trainer run by hand takes the defaults a flow would use for its dataset.

The dataclass defaults are NVIDIA's ml-20m recipe: on a small dataset a 2^20 batch is one step per
epoch and NeuMF ends below item popularity. So `python -m models.ncf.train --data DIR` reads the
dataset's name from DIR/manifest.json and, precedence lowest first:
- the trainer's dataclass defaults;
- `configs/<model>/<dataset>.yaml`, the flows' per-dataset defaults, when the dataset has one;
  otherwise Adam sized to the data (`data_sized`: a batch that gives at least MIN_STEPS steps per
  epoch, the learning rate and betas that go with it; said on stderr);
- the flags given on the command line.

The flows hand the trainer only the settings a user or a preset gave (configs/train.py), so a flow run
on a log without a preset gets the same choice, made here, once. `few_steps` is the NCF trainer's
warning when an epoch has fewer than MIN_STEPS steps, whoever chose the batch (a flow logs it as a
warning).

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

# NCF's steps per epoch below which Adam barely moves in an epoch. Issue 9: NeuMF at 1-2 steps ended
# below item popularity; issue 24: a 400k-row retail log reached full HR@10 0.114 at batch 16384 (about
# 100 steps) against 0.040 at 2^20 (1-2). The NCF presets run 76 (ml-1m), 95 (ml-20m's 2^20) and 238
# (ml-100k) steps: at least 50 lands a data-sized batch in that range. The trainer warns below it.
MIN_STEPS = 50
# Mult-VAE's presets run 3-12 steps an epoch (ml-100k 64 users of ~750, ml-20m 24,576 of ~118k) over
# 40-200 epochs and are its tuned best: few steps have not hurt it, so its batch keeps the issue-9 rule
# of at least 20 steps, and it has no warning.
VAECF_MIN_STEPS = 20


@dataclasses.dataclass(frozen=True)
class SizeRule:
    """A batch of at least `min_steps` steps per epoch; Adam for it: lr = lr_ref * (batch / batch_ref)
    ** 0.25, with `betas`."""

    batch_ref: int
    lr_ref: float
    betas: tuple[float, float]
    min_steps: int
    unit: str  # what a batch counts

    def lr(self, batch: int) -> float:
        return round(self.lr_ref * (batch / self.batch_ref) ** 0.25, 6)


# Why a fourth root, from the presets (configs/*/*.yaml, bench/RESULTS.md sections 3 and 12):
# - NCF: ml-100k's batch 2048 takes lr 0.001 (section 3's grid: 0.003 lost 0.04-0.06 HR@10), ml-1m's
#   65536 takes 0.002, ml-20m's 2^20 NVIDIA's tuned 0.0045. Through (2048, 0.001) the fourth root gives
#   0.0024 at 65536 and 0.0048 at 2^20, within 20% of both; the square root would give 0.023 at 2^20
#   (5x NVIDIA's) and linear scaling 0.5. Not settled: the ml-100k sweep's two best draws, batch 8192
#   at lr 0.0039 and 0.0053, tied with the preset's 0.001 at 2048; the rule's 0.0014 at 8192 is untried.
#   Measured on synth-tiny's rows as an own log (NeuMF, 10 epochs, CPU): full HR@10 0.532 with this
#   rule (batch 1024), 0.544 with batch 1024 and NVIDIA's lr and betas, 0.306 with the 2^20 batch
#   (popularity 0.314). Real ml-100k as an own log (NeuMF, 8 epochs): batch 8192 with this rule's lr
#   0.0014 and betas, full HR@10 0.101 (sampled 0.577); with NVIDIA's 0.0045 and betas 0.102 (sampled
#   0.621); popularity 0.066. `ncflow synth retail` (404k purchases once guests and returns are
#   dropped; 10 epochs): batch 16384, full HR@10 0.148 against popularity 0.041 and EASE 0.120. The
#   batch is what matters; whether the lr should be higher at 8192-16384 is not settled.
# - Mult-VAE: ml-1m's 500 users per step take the paper's 0.001, the sweeps' bests lie at 0.0006-0.0011
#   for 64-500 users (40 GPU draws at 16-128 users: 0.0002-0.002 all within 0.04 NDCG@100 of the best),
#   NVIDIA's 24,576 take 0.004: the rule gives 0.0006 at 64 and 0.0026 at 24,576.
# - Betas: every preset below 2^20 samples (NCF) or 24,576 users (VAE-CF) uses Adam's usual
#   (0.9, 0.999), and the learning rates above were measured with them; NVIDIA's (0.25, 0.5) and
#   (0.9, 0.9) go with their huge batches.
SIZE_RULES = {
    "ncf": SizeRule(batch_ref=2048, lr_ref=0.001, betas=(0.9, 0.999), min_steps=MIN_STEPS, unit="samples"),
    "vaecf": SizeRule(
        batch_ref=500, lr_ref=0.001, betas=(0.9, 0.999), min_steps=VAECF_MIN_STEPS, unit="users"
    ),
}


def preset_file(config_dir: str, dataset: str) -> Path | None:
    """`configs/<config_dir>/<dataset>.yaml` if it exists, found without importing `configs`."""
    spec = importlib.util.find_spec("configs")
    if spec is None or not spec.submodule_search_locations or "/" in dataset:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / config_dir / f"{dataset}.yaml"
    return path if path.is_file() else None


def largest_batch(units: int, default: int, min_steps: int = MIN_STEPS) -> int:
    """The largest power of two <= `default` that cuts `units` into at least `min_steps` steps."""
    batch = 1
    while batch * 2 <= min(default, units // min_steps):
        batch *= 2
    return batch


def data_sized(config_dir: str, units: int, default_batch: int, given: dict[str, Any]) -> dict[str, Any]:
    """Adam sized to `units` per epoch for a dataset without a preset: the batch (unless given), then
    the lr and betas that go with that batch (each unless given)."""
    rule = SIZE_RULES[config_dir]
    batch = given.get("batch_size") or largest_batch(units, default_batch, rule.min_steps)
    sized = {"batch_size": batch, "lr": rule.lr(batch), "beta1": rule.betas[0], "beta2": rule.betas[1]}
    return {k: v for k, v in sized.items() if k not in given}


def few_steps(steps: int, batch: int, unit: str) -> str | None:
    """The warning line for an NCF epoch of fewer than MIN_STEPS steps (None when there are enough)."""
    if steps >= MIN_STEPS:
        return None
    return (
        f"warning: an epoch is {steps} step(s) of {batch:,} {unit}, fewer than {MIN_STEPS}: Adam barely "
        "moves in an epoch and the model may end below item popularity; a smaller batch gives more steps"
    )


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
    elif config_dir in SIZE_RULES:  # EASE has no batches
        units = batch_units(manifest, {**values, **given})
        sized = data_sized(config_dir, units, values["batch_size"], given)
        values.update(sized)
        batch = given.get("batch_size", values["batch_size"])
        note = None
        if sized:
            note = (
                f"no configs/{config_dir}/{dataset}.yaml for dataset {dataset!r}: sized to the data: "
                + ", ".join(f"{k}={v}" for k, v in sized.items())
                + f" ({units:,} {SIZE_RULES[config_dir].unit} per epoch: about {max(1, units // batch)} steps; the default batch "
                f"{fields['batch_size'].default} gives {max(1, units // fields['batch_size'].default)}); "
                "pass --batch-size / --lr to choose"
            )
    else:
        note = None
    return {k: v for k, v in values.items() if k not in given}, note
