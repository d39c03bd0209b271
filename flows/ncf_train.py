"""The `ncf-train` flow: fetch -> preprocess -> train (torchrun) -> evaluate -> register.

    ncflow train ncf --dataset synth-tiny                      # locally, on a temporary Prefect server
    python flows/ncf_train.py synth-tiny                       # the same, without the CLI
    prefect deployment run ncf-train/ml20m --param epochs=5    # through a worker (see prefect.yaml)

Parameters left out (None) take the dataset's defaults from configs/ncf/<dataset>.yaml; everything is
validated by configs.ncf.NCFTrainParams before any task runs, so a bad value fails the run within a
second with the reason in its logs.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, runtime

from configs.ncf import NCFTrainParams
from ncflow.data.sources import dataset_label
from ncflow.errors import NcflowError
from tasks._run import artifact_key, run_logger
from tasks.data import fetch_raw, preprocess_data, processed_missing, raw_missing
from tasks.evaluate import evaluate_model
from tasks.register import register_model
from tasks.train import train_model

MODEL, METRIC = "ncf", "hr@10"


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


@flow(name="ncf-train", flow_run_name="ncf-{dataset}", persist_result=True)  # the result: a small dict
def ncf_train(
    dataset: str,
    gpus: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    negatives: int | None = None,
    precision: str | None = None,
    target_hr: float | None = None,
    seed: int | None = None,
    mf_dim: int | None = None,
    mlp_layers: list[int] | None = None,
    dropout: float | None = None,
    test_negatives: int | None = None,
    cpu_processes: int | None = None,
    source: str | None = None,
    data_dir: str | None = None,
    runs_dir: str | None = None,
    registry_dir: str | None = None,
) -> dict[str, Any]:
    """Train NeuMF on `dataset` and register it; None means the dataset's default (configs/ncf/).

    Args:
        dataset: ml-100k, ml-1m, ml-20m, ml-25m, synth-tiny, synth-ml1m, synth-ml20m, or a CSV/Parquet path
        gpus: GPUs (torchrun processes); 0 trains on CPUs with cpu_processes processes
        epochs: at most this many; training stops early at target_hr
        batch_size: global samples (positives + negatives) per step
        mlp_layers: MLP layer sizes, the first even
        source: a mirror URL, a local archive or a folder (default: the dataset's URL)
        data_dir: raw and processed data (default data/ under the working directory)
        runs_dir: checkpoints, one folder per flow run (default runs/)
        registry_dir: the model registry (default registry/)
    """
    overrides = {name: value for name, value in locals().items() if name != "dataset"}  # the parameters
    started = time.perf_counter()
    log = run_logger()
    try:
        params = NCFTrainParams.for_dataset(dataset, **overrides)
        check_gpus(params.gpus)
    except NcflowError as err:
        log.error("refusing to start: %s", err)
        raise
    paths = {
        name: str(Path(getattr(params, name)).resolve()) for name in ("data_dir", "runs_dir", "registry_dir")
    }
    label = dataset_label(params.dataset)
    key = artifact_key(MODEL, label)

    # Cached across runs; refreshed (run again) when the cached path no longer exists on disk.
    fetch = fetch_raw.with_options(
        refresh_cache=raw_missing(params.dataset, paths["data_dir"], params.source)
    )
    raw = fetch(params.dataset, paths["data_dir"], params.source)
    split = params.preprocess_config()
    prepare = preprocess_data.with_options(
        refresh_cache=processed_missing(label, raw, paths["data_dir"], split)
    )
    data = prepare(label, raw, paths["data_dir"], split, device=params.device)
    out = str(Path(paths["runs_dir"]) / run_id())  # fixed for the run: a retried training task resumes
    trained = train_model(MODEL, data, out, params.train_config(), params.processes, key)
    scores = evaluate_model(MODEL, trained["bundle"], data, params.device, expected=trained, metric=METRIC)
    registered = register_model(
        MODEL, label, trained["bundle"], data, scores, trained, params.model_dump(mode="json"),
        paths["registry_dir"], metric=METRIC, device=params.device,
    )  # fmt: skip

    flow_seconds = time.perf_counter() - started
    overhead = flow_seconds - trained["wall_seconds"]
    log.info(
        "flow %.1f s, trainer process %.1f s (train + eval %.1f s): orchestration and data %.1f s (%.1f%%)",
        flow_seconds, trained["wall_seconds"], trained["seconds"], overhead, 100 * overhead / flow_seconds,
    )  # fmt: skip
    return {
        "dataset": label,
        METRIC: scores[METRIC],
        "ndcg@10": scores["ndcg@10"],
        "trainer_hr@10": trained[METRIC],
        "epochs": trained["epochs"],
        "bundle": registered["path"],
        "version": registered["version"],
        "promoted": registered["promoted"],
        "champion": registered["champion"],
        "seconds": {
            "flow": round(flow_seconds, 3),
            "trainer_process": round(trained["wall_seconds"], 3),
            "train_and_eval": round(trained["seconds"], 3),
            "overhead": round(overhead, 3),
        },
    }


if __name__ == "__main__":
    print(ncf_train(sys.argv[1] if len(sys.argv) > 1 else "synth-tiny"))
