"""The body every training flow shares: validate -> fetch -> check the data -> preprocess -> train
(torchrun) -> evaluate -> register, for the model an `ncflow.specs.ModelSpec` describes.

`ncf-train` (flows/ncf_train.py) and `vae-cf-train` (flows/vaecf_train.py) are thin: a flow with its
own typed parameters (what Prefect shows and validates per deployment) that calls `train_and_register`.
The caching, retries, artifacts, registration and champion rule are therefore the same code for both.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from prefect import runtime
from prefect.states import State

from ncflow import registry, retention
from ncflow.data.sources import dataset_label
from ncflow.errors import NcflowError
from ncflow.fingerprint import fingerprint
from ncflow.specs import ModelSpec
from tasks._run import artifact_key, failed, run_logger
from tasks.check import check_data
from tasks.data import fetch_raw, preprocess_data, processed_missing, raw_missing
from tasks.evaluate import evaluate_model
from tasks.register import register_model
from tasks.train import train_model


def check_gpus(gpus: int) -> None:
    if gpus == 0:
        return
    import torch

    present = torch.cuda.device_count()
    if gpus > present:
        raise NcflowError(
            f"gpus={gpus} asked for, but this machine has {present} GPU(s): use gpus <= {present}"
            + (" or gpus=0 to train on CPUs" if present == 0 else "")
        )


def run_id() -> str:
    return str(runtime.flow_run.id or uuid.uuid4())


def ran_with(params: Any, trained: dict[str, Any]) -> dict[str, Any]:
    """The settings to register: `params`, with what the trainer sized to the data (batch, lr, betas
    left None on a dataset without a preset) filled in from the config it reported."""
    settings = params.model_dump(mode="json")
    config = trained.get("config") or {}
    return settings | {k: config[k] for k, v in settings.items() if v is None and k in config}


def unchanged(
    model: ModelSpec, label: str, same: registry.Entry, root: Path, seconds: float
) -> dict[str, Any]:
    """The result of a run that stops because nothing changed since version `same`."""
    champion = registry.champion(root, model.name, label)
    role = "the champion" if champion and champion.version == same.version else "registered, not the champion"
    reason = f"no new data since v{same.version} ({role}): same data, settings and code; force retrains"
    run_logger().info("%s %s: %s", model.name, label, reason)
    return {
        "model": model.name, "dataset": label, "skipped": True, "reason": reason, "version": same.version,
        "promoted": False, "champion": str(champion.path) if champion else None, "bundle": str(same.path),
        "seconds": {"flow": round(seconds, 3)},
    }  # fmt: skip


def train_and_register(model: ModelSpec, dataset: str, overrides: dict[str, Any]) -> dict[str, Any] | State:
    """Run inside a flow: `model` on `dataset` with `overrides` (None: the dataset's YAML default). A
    refusal (bad input, a failed data check: an NcflowError) ends the run Failed with its one line."""
    try:
        return _train_and_register(model, dataset, overrides)
    except NcflowError as err:
        return failed(err)


def _train_and_register(model: ModelSpec, dataset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    log = run_logger()
    try:
        params = model.params.for_dataset(dataset, **overrides)
        if params.nodes == 1:  # several nodes: each host's GPUs are checked where it is (ncflow/nodes.py)
            check_gpus(params.gpus)
        model = model.for_params(params)  # a model that trains on either split registers under its split's
    except NcflowError as err:
        log.error("refusing to start: %s", err)
        raise
    paths = {
        name: str(Path(getattr(params, name)).resolve()) for name in ("data_dir", "runs_dir", "registry_dir")
    }
    label = dataset_label(params.dataset)
    key = artifact_key(model.name, label)
    metric = model.selection_metric(params)  # the champion rule's: validation HR@10 when held out

    # Cached across runs; refreshed (run again) when the cached path no longer exists on disk.
    fetch = fetch_raw.with_options(
        refresh_cache=raw_missing(params.dataset, paths["data_dir"], params.source)
    )
    raw = fetch(params.dataset, paths["data_dir"], params.source, params.columns(), params.connection)
    split = params.preprocess_config()
    run = fingerprint(raw["md5"], params.model_dump(mode="json"), split.model_dump(mode="json"))
    same = None if params.force else registry.same_run(Path(paths["registry_dir"]), model.name, label, run)
    if same is not None:  # the same data, settings and code: training would give the same model again
        return unchanged(model, label, same, Path(paths["registry_dir"]), time.perf_counter() - started)
    check_data(label, raw, paths["data_dir"], split, params.check_limits())  # a failure ends the run here
    prepare = preprocess_data.with_options(
        refresh_cache=processed_missing(label, raw, paths["data_dir"], split)
    )
    data = prepare(label, raw, paths["data_dir"], split, device=params.device)
    out = str(Path(paths["runs_dir"]) / run_id())  # fixed for the run: a retried training task resumes
    with retention.running(Path(out)) as folder:  # no pruner takes the folder until its outcome is written
        trained = train_model(
            model.name, data, out, params.train_config(), params.processes, key, **params.node_settings()
        )
        scores = evaluate_model(
            model.name, trained["bundle"], data, params.device, expected=trained, metric=metric
        )
        registered = register_model(
            model.name, label, trained["bundle"], data, scores, trained, ran_with(params, trained),
            paths["registry_dir"], metric=metric, device=params.device, fingerprint=run,
            keep_versions=params.keep_versions, runs_dir=paths["runs_dir"],
        )  # fmt: skip
        folder.outcome = {"state": "registered", "model": model.name, "version": registered["version"]}

    flow_seconds = time.perf_counter() - started
    overhead = flow_seconds - trained["wall_seconds"]
    log.info(
        "flow %.1f s, trainer process %.1f s (train + eval %.1f s): orchestration and data %.1f s (%.1f%%)",
        flow_seconds, trained["wall_seconds"], trained.get("seconds", 0.0), overhead, 100 * overhead / flow_seconds,
    )  # fmt: skip
    return {
        "model": model.name,
        "dataset": label,
        **{name: scores[name] for name in model.metrics},
        **{name: scores[name] for name in (*model.full_metrics, metric) if name in scores},
        **{
            f"{baseline}_{name}": scores[f"{baseline}_{name}"]
            for baseline in ("popularity", "ease")
            for name in model.full_metrics
            if f"{baseline}_{name}" in scores
        },
        **{name: value for name, value in scores.items() if name.startswith("cold_start_")},  # temporal
        f"trainer_{metric}": trained[model.trainer_key(metric)],
        "epochs": trained["epochs"],
        "bundle": registered["path"],
        "version": registered["version"],
        "promoted": registered["promoted"],
        "champion": registered["champion"],
        "seconds": {
            "flow": round(flow_seconds, 3),
            "trainer_process": round(trained["wall_seconds"], 3),
            "train_and_eval": round(trained.get("seconds", 0.0), 3),
            "overhead": round(overhead, 3),
        },
    }
