"""The `ease-train` flow: fetch -> preprocess (either split) -> fit EASE (lambda on validation) -> evaluate
-> register, through the same body as `ncf-train` (flows/training.py): the same caching, artifacts and
registry. On the ncf split it registers as `ease` (champion rule: validation full-ranking NDCG@10), on
the vaecf split as `ease-vaecf` (validation NDCG@100).

    ncflow train ease --dataset ml-100k                               # locally, on a temporary Prefect server
    ncflow train ease --dataset ml-100k --protocol vaecf              # beside Mult-VAE, on its split
    python flows/ease_train.py synth-tiny                             # the same, without the CLI
    ncflow recommend --model ease --dataset ml-100k --items 1,50,181  # fold-in: scores = x B

Parameters left out (None) take the dataset's defaults from configs/ease/<dataset>.yaml; everything is
validated by configs.ease.EASETrainParams before any task runs.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from prefect import flow

from flows.training import train_and_register
from ncflow.specs import SPECS

MODEL = SPECS["ease"]


@flow(name="ease-train", flow_run_name="ease-{dataset}", persist_result=True)  # the result: a small dict
def ease_train(
    dataset: str,
    protocol: str | None = None,
    gpus: int | None = None,
    lambdas: list[float] | None = None,
    lambda_without_validation: float | None = None,
    eval_users_per_chunk: int | None = None,
    validation: bool | None = None,
    test_negatives: int | None = None,
    heldout_users: int | None = None,
    cpu_processes: int | None = None,
    force: bool | None = None,
    source: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    time_format: str | None = None,
    title_col: str | None = None,
    drop_null_ids: bool | None = None,
    min_rating: float | None = None,
    connection: str | None = None,
    since: date | None = None,
    until: date | None = None,
    window_days: int | None = None,
    max_row_drop: float | None = None,
    max_duplicate_share: float | None = None,
    data_dir: str | None = None,
    runs_dir: str | None = None,
    registry_dir: str | None = None,
    keep_versions: int | None = None,
    # several machines (issue 19): every flow takes them; EASE, one solve on one device, refuses nodes > 1
    nodes: int | None = None,
    scheduler: str | None = None,
    rendezvous_timeout: int | None = None,
) -> dict[str, Any]:
    """Fit EASE on `dataset` and register it; None means the dataset's default (configs/ease/).

    Args:
        dataset: ml-100k, ml-1m, ml-20m, ml-25m, synth-<preset>, your own log (a CSV/Parquet file, folder
            or glob) or pg:TABLE
        protocol: ncf (leave latest out: NeuMF's split) or vaecf (held-out users: Mult-VAE's)
        gpus: 0 fits on the CPU, 1 on a GPU (one solve on one device: cpu_processes stays 1)
        lambdas: the L2 weights tried; validation picks one
        lambda_without_validation: the lambda fitted on an ncf split made without validation
        validation: ncf split: hold out each user's second-latest item to pick lambda on
        force: refit even when a registered version was fitted on the same data, settings and code
        source: a mirror URL, a local archive or a folder (default: the dataset's URL); for a pg:TABLE
            dataset, a SQL query to read instead of the whole table
        user_col, item_col, rating_col, timestamp_col, time_format, title_col, drop_null_ids,
            min_rating, connection, since, until, window_days,
            max_row_drop, max_duplicate_share: your own log and its data checks, as for ncf-train
        data_dir: raw and processed data (default data/ under the working directory)
        runs_dir: one folder per flow run (default runs/)
        registry_dir: the model registry (default registry/)
        keep_versions: registered versions kept besides the champion and the best (default 5); older
            ones and finished runs' folders in runs_dir are pruned after registering
    """
    overrides = {name: value for name, value in locals().items() if name != "dataset"}  # the parameters
    return train_and_register(MODEL, dataset, overrides)


if __name__ == "__main__":
    print(ease_train(sys.argv[1] if len(sys.argv) > 1 else "synth-tiny"))
