"""What differs between the models the flows train: one `ModelSpec` per model, everything else shared.

The flow body (flows/training.py), the tasks (tasks/*.py), the model card and the CLI read these
fields instead of naming a model; a model plugs in with a trainer speaking `models.common.events`
(`python -m models.<package>.train --data DIR --out DIR [flags]`), a
`models.<package>.evaluate.evaluate_bundle(bundle, data, device=...)`, a parameter class
(configs/<package>/) and an entry here.

A model that trains on either split (EASE, Mult-VAE: their `protocol` parameter) has one entry per
split, so that its registry folder, champion and metrics are the split's: `ease` (NCF split) and
`ease-vaecf`, `vae-cf` (VAE-CF split) and `vae-cf-ncf`. The CLI lists the first of each; the flow
picks the run's entry with `for_params`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ncflow.errors import NcflowError


def _identity(scores: dict[str, Any]) -> dict[str, Any]:
    return scores


def _vaecf_scores(result: dict[str, Any]) -> dict[str, Any]:
    """models.vaecf.evaluate.evaluate_bundle's nested result, flat: the model's metrics, its validation
    ones as `valid_<metric>`, then the baselines' as `popularity_<metric>` and `ease_<metric>` (the card
    shows what the model adds)."""
    return {
        **result["mult_vae"],
        **{f"valid_{k}": v for k, v in result.get("valid", {}).items() if k != "full_users"},
        **{f"popularity_{k}": v for k, v in result["popularity"].items() if k != "full_users"},
        **{k: v for k, v in result.get("baselines", {}).items() if k.startswith("ease_")},
        "users": result["users"],
    }


def _ncf_epoch(event: dict[str, Any], start: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """NCF's per-epoch negative augmentation: fresh negatives for every positive, drawn on the device."""
    k = start.get("config", {}).get("negatives", 0)
    drawn = k * start.get("train_positives", 0)
    backend = "CuPy" if str(start.get("device", "")).startswith("cuda") else "NumPy"
    note = f"{drawn:,} fresh negatives ({k} per positive) drawn with {backend} on {start.get('device')}"
    return {"negatives drawn": drawn}, note


def _vaecf_epoch(event: dict[str, Any], start: dict[str, Any]) -> tuple[dict[str, Any], str]:
    return {"KL beta": round(event.get("beta", 0.0), 5)}, f"KL weight {event.get('beta', 0.0):.4f}"


def _ease_epoch(event: dict[str, Any], start: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """EASE's `epochs` are the lambdas tried: one closed-form solve each, then validation."""
    items = start.get("items", 0)
    return {}, f"lambda {event.get('lambda', 0):g}: one {items:,} x {items:,} solve on {start.get('device')}"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the CLI's, the registry folder's and the artifact keys' name
    package: str  # models.<package>: its trainer, evaluate_bundle and bundle
    flow: str  # the Prefect flow's name
    params_path: str  # "module:Class" of its pydantic parameters (configs.train.TrainParams)
    flow_path: str  # "module:function" of its flow
    metric: str  # the champion rule: a newcomer is promoted only if it beats the champion on this
    trainer_metric: str  # the trainer's `done` key that the independent test-set score must reproduce
    metrics: tuple[str, ...]  # shown: epoch table, learning curve, model card, flow result
    throughput: tuple[str, str]  # (epoch event key, label)
    scores: Callable[[dict[str, Any]], dict[str, Any]] = field(default=_identity)  # evaluate_bundle -> flat
    # Full ranking against every unseen item (models/common/full_rank.py): the evaluate task's, not per epoch.
    full_metrics: tuple[str, ...] = ("full_hr@10", "full_ndcg@10", "full_recall@20")
    epoch_note: Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], str]] | None = None
    protocols: tuple[tuple[str, str], ...] = ()  # (the run's `protocol`, the entry it registers under)
    listed: bool = True  # a `ncflow train` subcommand (an entry for another split is reached through it)

    @property
    def params(self) -> Any:
        module, name = self.params_path.split(":")
        return getattr(importlib.import_module(module), name)

    def flow_function(self) -> Any:
        module, name = self.flow_path.split(":")
        return getattr(importlib.import_module(module), name)

    def trainer_key(self, metric: str) -> str:
        return self.trainer_metric if metric == self.metric else metric

    def selection_metric(self, params: Any) -> str:
        """The champion rule's metric for a run of `params`: the validation one when it holds one out
        (NCF: valid_hr@10)."""
        return f"valid_{self.metric}" if getattr(params, "validation", False) else self.metric

    def for_params(self, params: Any) -> ModelSpec:
        """The entry a run of `params` registers under: its split's, for a model that trains on either."""
        return SPECS[dict(self.protocols).get(getattr(params, "protocol", ""), self.name)]


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="ncf", package="ncf", flow="ncf-train", params_path="configs.ncf:NCFTrainParams",
            flow_path="flows.ncf_train:ncf_train", metric="hr@10", trainer_metric="hr@10",
            metrics=("hr@10", "ndcg@10"), throughput=("train_samples_per_s", "samples/s"), epoch_note=_ncf_epoch,
        ),
        ModelSpec(
            name="vae-cf", package="vaecf", flow="vae-cf-train", params_path="configs.vaecf:VAECFTrainParams",
            flow_path="flows.vaecf_train:vae_cf_train", metric="ndcg@100", trainer_metric="test_ndcg@100",
            metrics=("ndcg@100", "recall@20", "recall@50"), throughput=("users_per_s", "users/s"),
            scores=_vaecf_scores, epoch_note=_vaecf_epoch, protocols=(("ncf", "vae-cf-ncf"),),
        ),
        ModelSpec(
            name="ease", package="ease", flow="ease-train", params_path="configs.ease:EASETrainParams",
            flow_path="flows.ease_train:ease_train", metric="full_ndcg@10", trainer_metric="full_ndcg@10",
            metrics=("full_ndcg@10", "full_hr@10", "hr@10", "ndcg@10"), throughput=("lambda", "lambda"),
            epoch_note=_ease_epoch, protocols=(("vaecf", "ease-vaecf"),),
        ),
        # The same models on the other split (see the module docstring).
        ModelSpec(
            name="ease-vaecf", package="ease", flow="ease-train", params_path="configs.ease:EASETrainParams",
            flow_path="flows.ease_train:ease_train", metric="ndcg@100", trainer_metric="ndcg@100",
            metrics=("ndcg@100", "recall@20", "recall@50"), throughput=("lambda", "lambda"),
            epoch_note=_ease_epoch, listed=False,
        ),
        ModelSpec(
            name="vae-cf-ncf", package="vaecf", flow="vae-cf-train", params_path="configs.vaecf:VAECFTrainParams",
            flow_path="flows.vaecf_train:vae_cf_train", metric="full_ndcg@10", trainer_metric="test_full_ndcg@10",
            metrics=("ndcg@100", "recall@20", "recall@50"), throughput=("users_per_s", "users/s"),
            scores=_vaecf_scores, epoch_note=_vaecf_epoch, listed=False,
        ),
    )
}  # fmt: skip


def spec(model: str) -> ModelSpec:
    if model not in SPECS:
        raise NcflowError(f"unknown model {model!r}: use one of {', '.join(SPECS)}")
    return SPECS[model]
