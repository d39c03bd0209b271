"""The batch-scoring task: every user's top-k from a registered model, on a Dask cluster, as Parquet.

Not cached: the output is replaced whole each run (the champion may have moved). One retry, for a
cluster that lost a worker; a problem with the input (NcflowError: no champion, a bad k) is not retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ncflow.batch.cluster import dask_client
from ncflow.batch.locate import locate_job
from ncflow.batch.recommend_all import recommend_all
from ncflow.errors import NcflowError
from tasks._run import artifact, artifact_key, run_logger


def _worth_retrying(task, task_run, state) -> bool:
    try:
        state.result()
    except NcflowError:
        return False
    except Exception:  # noqa: BLE001 - a lost worker or a full disk may pass next time
        return True
    return True


@task(
    name="score_all_users",
    task_run_name="score-all-{model}-{dataset}",
    retries=1,
    retry_delay_seconds=[30],
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,
)
def score_all_users(
    model: str,
    dataset: str,
    k: int,
    out: str,
    version: str = "champion",
    registry_dir: str = "registry",
    data_dir: str = "data",
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Write `model`'s (`version`'s) top-`k` for every user of `dataset` to `out`; return rows, users,
    parts, path and the bundle scored. Artifact `recommend-<model>-<dataset>`."""
    log = run_logger()
    job = locate_job(model, dataset, version, Path(registry_dir), Path(data_dir), device)
    log.info("scoring every user with %s", job.bundle)
    with dask_client(workers, scheduler, device) as client:
        log.info(
            "Dask cluster: %d worker(s) at %s",
            len(client.scheduler_info()["workers"]),
            client.scheduler.address,
        )
        result = recommend_all(client, job, k, Path(out))
    log.info(
        "wrote %s rows (%s users x %d) to %s",
        f"{result['rows']:,}",
        f"{result['users']:,}",
        k,
        result["path"],
    )
    artifact(
        create_markdown_artifact,
        f"**{result['rows']:,}** rows: {result['users']:,} users x top-{k} of {result['items']:,} items, "
        f"{result['parts']} Parquet part(s)\n\n- output: `{Path(result['path']).resolve()}`\n- model: `{job.bundle}`\n",
        key=artifact_key("recommend", model, dataset),
        description=f"nightly top-{k} of every user",
    )
    return {**result, "bundle": job.bundle}
