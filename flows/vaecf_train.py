"""The `vae-cf-train` flow: fetch -> preprocess (vaecf protocol) -> train Mult-VAE (torchrun) -> evaluate
-> register, through the same body as `ncf-train` (flows/training.py): the same caching, retries,
artifacts and registry; the champion moves only to a model with a better test NDCG@100.

    ncflow train vae-cf --dataset synth-tiny                         # locally, on a temporary Prefect server
    python flows/vaecf_train.py synth-tiny                           # the same, without the CLI
    prefect deployment run vae-cf-train/ml20m --param epochs=50      # through a worker (see prefect.yaml)
    ncflow recommend --model vae-cf --dataset ml-20m --items 1,2,3   # fold-in: a new user, no retraining

Parameters left out (None) take the dataset's defaults from configs/vaecf/<dataset>.yaml; everything
is validated by configs.vaecf.VAECFTrainParams before any task runs, so a bad value fails the run
within a second with the reason in its logs.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from prefect import flow

from flows.training import train_and_register
from ncflow.specs import SPECS

MODEL = SPECS["vae-cf"]


@flow(name="vae-cf-train", flow_run_name="vae-cf-{dataset}", persist_result=True)  # the result: a small dict
def vae_cf_train(
    dataset: str,
    gpus: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    beta1: float | None = None,
    beta2: float | None = None,
    eps: float | None = None,
    anneal: str | None = None,
    precision: str | None = None,
    seed: int | None = None,
    compile: bool | None = None,
    hidden: int | None = None,
    latent: int | None = None,
    dropout: float | None = None,
    checkpoint_every: int | None = None,
    eval_users_per_chunk: int | None = None,
    heldout_users: int | None = None,
    protocol: str | None = None,
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
    # several machines (issue 19)
    nodes: int | None = None,
    scheduler: str | None = None,
    rendezvous_timeout: int | None = None,
) -> dict[str, Any]:
    """Train Mult-VAE on `dataset` and register it; None means the dataset's default (configs/vaecf/).

    Args:
        dataset: ml-100k, ml-1m, ml-20m, ml-25m, synth-tiny, synth-ml1m, synth-ml20m, your own log (a
            CSV/Parquet file, a folder of them with hive partitions, a glob) or pg:TABLE (PostgreSQL)
        gpus: GPUs (torchrun processes); 0 trains on CPUs with cpu_processes processes
        epochs: every one runs (no early stopping); the bundle is the last epoch's model
        batch_size: global users per step (default: the dataset's preset, else sized to the data,
            at least 20 steps per epoch, with lr and betas to match; NVIDIA's ML-20M recipe: 24,576)
        anneal: the KL weight schedule: nvidia (cap 0.1), paper (cap 0.2) or none
        hidden: encoder/decoder hidden units; latent: the latent dimension
        heldout_users: validation and test users each (capped at 10% of the users)
        protocol: vaecf (held-out users) or ncf (leave latest out with validation, as NeuMF and EASE:
            registered as vae-cf-ncf, comparable with them)
        source: a mirror URL, a local archive or a folder (default: the dataset's URL); for a pg:TABLE
            dataset, a SQL query to read instead of the whole table
        user_col, item_col, rating_col, timestamp_col: your own log's column names (ids may be
            integers or strings; without a timestamp column, row order is time order)
        time_format: the time column's strptime format when it is text, e.g. %m/%d/%Y %H:%M (UTC)
        title_col: your log's item name column, kept beside the item ids: recommendations show names
        drop_null_ids: drop rows without a user or item id (counted in the data report); without it
            such rows fail the data checks
        min_rating: drop rows whose rating is below this (counted in the data report); with
            rating_col Quantity, 1 drops a shop's returns. Ratings are never weights: every kept row
            is one positive
        connection: pg: datasets: where the connection string is, env:VARIABLE (default
            env:NCFLOW_DATABASE_URL) or secret:BLOCK (a Prefect Secret block); never the string
        since, until: train on interactions in [since, until) (dates, 00:00 UTC); until alone: a
            backfill as of that day
        window_days: train on the last N days: before until, else up to the log's newest row (or
            today, when the log reaches today); the data report says which
        max_row_drop: the data checks refuse a source whose rows dropped by more than this share
            against the previous run's snapshot (default 0.3)
        max_duplicate_share: and one whose exact repeated rows exceed this share (default 0.1)
        force: retrain even when a registered version was trained on the same data, settings and code
            (without it such a run ends at once: "no new data since vN")
        data_dir: raw and processed data (default data/ under the working directory)
        runs_dir: checkpoints, one folder per flow run (default runs/)
        registry_dir: the model registry (default registry/)
        keep_versions: registered versions kept besides the champion and the best (default 5); older
            ones and finished runs' folders in runs_dir are pruned after registering
        nodes: machines (default 1); above 1, one torchrun agent on each of `nodes` Dask workers, with
            `gpus` GPUs (or `cpu_processes` CPU processes) each; data_dir and runs_dir on a shared disk
        scheduler: tcp://HOST:PORT of the Dask cluster whose workers are the nodes (default: a local
            cluster of `nodes` processes on this machine)
        rendezvous_timeout: seconds the nodes wait for each other before the run fails (default 600)
    """
    overrides = {name: value for name, value in locals().items() if name != "dataset"}  # the parameters
    return train_and_register(MODEL, dataset, overrides)


if __name__ == "__main__":
    print(vae_cf_train(sys.argv[1] if len(sys.argv) > 1 else "synth-tiny"))
