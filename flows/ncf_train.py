"""The `ncf-train` flow: fetch -> preprocess -> train (torchrun) -> evaluate -> register.

Its body is flows/training.py's, shared with `vae-cf-train`; this module holds the typed parameters.

    ncflow train ncf --dataset synth-tiny                      # locally, on a temporary Prefect server
    python flows/ncf_train.py synth-tiny                       # the same, without the CLI
    prefect deployment run ncf-train/ml20m --param epochs=5    # through a worker (see prefect.yaml)

Parameters left out (None) take the dataset's defaults from configs/ncf/<dataset>.yaml; everything is
validated by configs.ncf.NCFTrainParams before any task runs, so a bad value fails the run within a
second with the reason in its logs.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow

from flows.training import check_gpus, train_and_register
from ncflow.specs import SPECS

__all__ = ["check_gpus", "ncf_train"]  # check_gpus: the CLI checks before starting a server
MODEL = SPECS["ncf"]


@flow(name="ncf-train", flow_run_name="ncf-{dataset}", persist_result=True)  # the result: a small dict
def ncf_train(
    dataset: str,
    gpus: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    eps: float | None = None,
    weight_decay: float | None = None,
    negatives: int | None = None,
    verified_negatives: bool | None = None,
    precision: str | None = None,
    target_hr: float | None = None,
    patience: int | None = None,
    seed: int | None = None,
    cuda_graphs: bool | None = None,
    architecture: str | None = None,
    mf_dim: int | None = None,
    mlp_layers: list[int] | None = None,
    dropout: float | None = None,
    test_negatives: int | None = None,
    validation: bool | None = None,
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
        epochs: at most this many; training stops early at target_hr, or after `patience` epochs
            without a better HR@10 (validation HR@10 with `validation`)
        validation: hold out each user's second-latest item; early stopping, the kept weights and the
            champion rule then use validation HR@10, and test is scored once, at the end
        batch_size: global samples (positives + negatives) per step
        architecture: neumf, or mf (GMF alone: a dot product; mlp_layers and dropout unused)
        mlp_layers: MLP layer sizes, the first even
        weight_decay: L2 on every parameter, through Adam
        source: a mirror URL, a local archive or a folder (default: the dataset's URL)
        data_dir: raw and processed data (default data/ under the working directory)
        runs_dir: checkpoints, one folder per flow run (default runs/)
        registry_dir: the model registry (default registry/)
    """
    overrides = {name: value for name, value in locals().items() if name != "dataset"}  # the parameters
    return train_and_register(MODEL, dataset, overrides)


if __name__ == "__main__":
    print(ncf_train(sys.argv[1] if len(sys.argv) > 1 else "synth-tiny"))
