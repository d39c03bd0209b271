"""The `batch-recommend` flow: every user's top-k from a registered model, as Parquet, on a schedule.

    prefect deployment run batch-recommend/ml20m --watch           # nightly (prefect.yaml): model best
    python flows/batch_recommend.py synth-tiny                     # locally
    ncflow recommend --all --dataset synth-tiny -k 10 --out recs/  # the same work without Prefect

The output folder (default recommendations/<model>/<dataset>/, one part-NNNNN.parquet per Dask worker)
is replaced whole when every part is written, so readers never see a half-written night.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from prefect import flow
from pydantic import Field

from ncflow.data.sources import dataset_label
from tasks.recommend import score_all_users


@flow(name="batch-recommend", flow_run_name="recommend-{model}-{dataset}")
def batch_recommend(
    dataset: str,
    model: Literal["ncf", "vae-cf", "ease", "vae-cf-ncf", "ease-vaecf", "best"] = "ncf",
    k: int = Field(default=100, ge=1),
    out: str | None = None,
    version: str = "champion",
    workers: int | None = Field(default=None, ge=1),
    scheduler: str | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    registry_dir: str = "registry",
    data_dir: str = "data",
) -> dict[str, Any]:
    """Score every user of `dataset` with `model`'s `version` (champion | latest | N); model `best`:
    the dataset's best across families (ncflow/best.py), whichever that is tonight.

    Args:
        out: a folder (one Parquet part per worker) or a .parquet file; default recommendations/<model>/<dataset>
        workers: Dask workers of a local cluster (default: every GPU, or 1 CPU process)
        scheduler: tcp://host:8786 of an existing Dask cluster to use instead
        data_dir: vae-cf only: where the processed data its users come from lives
    """
    label = dataset_label(dataset)
    target = out or f"recommendations/{model}/{label}"
    return score_all_users(
        model, label, k, target, version, registry_dir, data_dir, workers, scheduler, device
    )


if __name__ == "__main__":
    print(batch_recommend(sys.argv[1] if len(sys.argv) > 1 else "synth-tiny"))
