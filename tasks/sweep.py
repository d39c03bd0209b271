"""The sweep's own task: rank the trials and publish the table. The trials themselves are the normal
`train_model` task (tasks/train.py), and the winner goes through `evaluate_model` and `register_model`."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ncflow.sweep import rank_rows
from tasks._run import artifact, artifact_key, run_logger


@task(name="rank_trials", task_run_name="rank-{model}-trials", cache_policy=NO_CACHE)
def rank_trials(
    model: str,
    dataset: str,
    trials: list[dict[str, Any]],
    summaries: list[dict[str, Any] | None],
    errors: list[str | None],
) -> dict[str, Any]:
    """{rows (best first), metric (the summary key ranked by), measured_on, best (trial number or None)};
    artifact `sweep-<model>-<dataset>-trials`."""
    rows, key, what = rank_rows(model, trials, summaries, errors)
    best = rows[0]["trial"] if rows and rows[0]["rank"] == 1 else None
    run_logger().info("trials ranked by %s (%s): best %s", key, what, best)
    artifact(
        create_table_artifact, rows, key=artifact_key("sweep", model, dataset, "trials"),
        description=f"{len(trials)} trials of {model} on {dataset}, ranked by `{key}`, measured on {what}",
    )  # fmt: skip
    return {"rows": rows, "metric": key, "measured_on": what, "best": best}
