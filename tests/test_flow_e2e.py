"""End to end, the production path, on the shared real stack (tests/e2e_stack.py): a `prefect server`,
`prefect --no-prompt deploy --all` from prefect.yaml, a process worker.

- The scheduler: Scheduled runs of both weekly ml20m deployments at their cron's next times, and an
  interval schedule whose run the worker picks up and completes with no `prefect deployment run`.
- `ncf-train/synth-tiny` through `prefect deployment run`: task runs, artifacts, one log line per
  epoch, the registered bundle; a second run finds its data tasks Cached; bad parameters fail the run
  within seconds, with the reason in its logs.
- `vae-cf-train/synth-tiny` (a tiny Mult-VAE, 3 epochs): the same tasks, artifacts and registry.
The server's and the worker's logs are checked for tracebacks and ERROR lines when the stack stops.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time

from e2e_stack import POOL, finished_run, prefect, run_deployment, wait_until

DEPLOYMENT, VAE_DEPLOYMENT = "ncf-train/synth-tiny", "vae-cf-train/synth-tiny"
WEEKLY = {"ncf-train/ml20m": 0, "vae-cf-train/ml20m": 1}  # prefect.yaml: Mondays, Tuesdays 03:00 UTC


def next_weekly(after: dt.datetime, weekday: int, count: int) -> list[dt.datetime]:
    """The next `count` 03:00 UTC times on `weekday` (0 = Monday) after `after`."""
    day = after.astimezone(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    day += dt.timedelta(days=(weekday - day.weekday()) % 7)
    if day <= after:
        day += dt.timedelta(days=7)
    return [day + dt.timedelta(weeks=i) for i in range(count)]


async def deployment_runs(name: str, state: str | None = None) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStateType

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        state_filter = FlowRunFilter(state={"type": FlowRunFilterStateType(any_=[state])}) if state else None
        runs = await client.read_flow_runs(flow_run_filter=state_filter)
    return [run for run in runs if run.deployment_id == deployment.id]


def test_deploy_all_schedules_the_weekly_retraining(stack):
    now = dt.datetime.now(dt.UTC)
    for name, weekday in WEEKLY.items():
        runs = wait_until(
            lambda name=name: stack.call(deployment_runs, name, "SCHEDULED"),
            f"Scheduled runs of {name}",
            90,
            1,
        )
        times = sorted(run.expected_start_time.timestamp() for run in runs)
        assert len(times) >= 3, (name, times)
        assert times[:3] == [t.timestamp() for t in next_weekly(now, weekday, 3)], (name, times[:3])


async def stop_schedules(name: str) -> None:
    """Deactivate the deployment's schedules: the server deletes the runs they had scheduled."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        for schedule in deployment.schedules:
            await client.update_deployment_schedule(deployment.id, schedule.id, active=False)


def test_an_interval_schedule_runs_through_the_worker_without_deployment_run(stack):
    """A synth-tiny deployment on a 30 s interval, made here from the same entrypoint (prefect.yaml
    keeps none: a permanent short schedule would retrain synth-tiny on every user's worker for ever).
    Its first run is left to the scheduler and the worker; then the schedule is switched off."""
    where = stack.tmp / "interval"
    params = {"dataset": "synth-tiny", "gpus": 0, "epochs": 2, "data_dir": str(where / "data"),
              "runs_dir": str(where / "runs"), "registry_dir": str(where / "registry")}  # fmt: skip
    name = "ncf-train/synth-tiny-interval"
    prefect(
        stack.env, "--no-prompt", "deploy", "flows/ncf_train.py:ncf_train", "--name", name.split("/")[1],
        "--pool", POOL, "--interval", "30", "--params", json.dumps(params),
    )  # fmt: skip
    try:
        started = wait_until(
            lambda: [r for r in stack.call(deployment_runs, name) if r.state and not r.state.is_scheduled()],
            "the worker to pick up a scheduled run", 180, 0.5,
        )  # fmt: skip
    finally:
        stack.call(stop_schedules, name)  # one run is enough; no more during later tests
    assert len(started) == 1 and started[0].auto_scheduled, started  # the scheduler's, not `deployment run`
    run = stack.call(finished_run, str(started[0].id))
    assert run["state"] == "Completed", run["logs"][-3000:]
    assert (where / "registry" / "ncf" / "synth-tiny" / "v1" / "model.safetensors").is_file()
    assert [r.id for r in stack.call(deployment_runs, name)] == [started[0].id]  # and nothing after it


def epoch_lines(logs: list[str], epoch: int) -> list[str]:
    return [line for line in logs if re.match(rf"epoch\s+{epoch}\b", line)]


def test_deployment_runs_caches_registers_and_refuses_bad_parameters(stack):
    tmp = stack.tmp
    where = [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]
    started = time.monotonic()
    first = run_deployment(stack, DEPLOYMENT, *where, "epochs=3")
    assert first["state"] == "Completed", first["logs"][-3000:]
    assert set(first["tasks"].values()) == {"Completed"}, first["tasks"]
    assert {"fetch-synth-tiny", "preprocess-synth-tiny", "train-ncf", "evaluate-ncf"} <= set(first["tasks"])
    keys = set(first["artifacts"])
    for suffix in ("progress", "epochs", "learning-curve", "model-card", "metrics", "bundle"):
        assert f"ncf-synth-tiny-{suffix}" in keys, keys
    card = first["artifacts"]["ncf-synth-tiny-model-card"].data  # ends with the best alias's decision
    assert "## Best across families\n\nthis model is now the best: first model on the ncf split" in card, card
    epochs = first["artifacts"]["ncf-synth-tiny-epochs"].data
    rows = json.loads(epochs) if isinstance(epochs, str) else epochs
    assert [row["epoch"] for row in rows] == [0, 1, 2] and "NDCG@10" in rows[0]
    # the table and the curve are rewritten in place each epoch: one artifact per run, not one per epoch
    assert (
        first["versions"]["ncf-synth-tiny-epochs"] == first["versions"]["ncf-synth-tiny-learning-curve"] == 1
    )
    assert "3 of at most 3 epochs done" in first["artifacts"]["ncf-synth-tiny-learning-curve"].data
    train_log = first["task_logs"]["train-ncf"]
    for epoch in range(3):  # one line per epoch, with the negatives drawn and the seconds
        (line,) = epoch_lines(train_log, epoch)
        assert "fresh negatives" in line and "HR@10" in line and "+ eval" in line, line
    champion = tmp / "registry" / "ncf" / "synth-tiny" / "v1"
    assert (champion / "model.safetensors").is_file() and (champion / "MODEL_CARD.md").is_file()
    assert json.loads((champion.parent / "champion.json").read_text())["version"] == 1
    result = first["result"]
    assert result["bundle"] == str(champion) and result["hr@10"] == result["trainer_hr@10"]
    for name in ("full_hr@10", "full_ndcg@10", "full_recall@20"):  # full ranking beside the sampled metrics
        assert 0 <= result["popularity_" + name] <= 1 and 0 <= result[name] <= 1, result
    assert "### Full ranking" in (champion / "MODEL_CARD.md").read_text()
    print(f"\nfirst run: {first['seconds']:.1f} s in the flow run, {result['seconds']}", file=sys.stderr)

    assert first["tasks"]["check-synth-tiny"] == "Completed" and "synth-tiny-data-report" in keys

    # The same data, settings and code: the run stops after fetching, before any trainer starts.
    second = run_deployment(stack, DEPLOYMENT, *where, "epochs=3")
    assert second["state"] == "Completed", second["logs"][-3000:]
    assert second["tasks"] == {"fetch-synth-tiny": "Cached"}, second["tasks"]
    assert second["result"]["skipped"] and second["result"]["version"] == 1
    assert "no new data since v1 (the champion)" in second["logs"]
    forced = run_deployment(stack, DEPLOYMENT, *where, "epochs=3", "force=true")
    assert forced["state"] == "Completed", forced["logs"][-3000:]
    assert forced["tasks"]["fetch-synth-tiny"] == forced["tasks"]["preprocess-synth-tiny"] == "Cached"
    assert forced["result"]["version"] == 2 and not forced["result"]["promoted"]  # same score: not better
    print(f"second run: {second['seconds']:.1f} s, forced {forced['seconds']:.1f} s", file=sys.stderr)

    for bad, message in [
        ("dataset=nope", "unknown dataset 'nope'"),
        ("epochs=0", "epochs: Input should be greater than or equal to 1"),
        ("gpus=64", "gpus=64 asked for"),
    ]:
        with stack.expected_failures():
            failed = run_deployment(stack, DEPLOYMENT, *where, bad)
        assert failed["state"] == "Failed" and message in failed["logs"], (bad, failed["logs"][-2000:])
        assert failed["tasks"] == {}, failed["tasks"]  # refused before any task ran
    print(f"e2e total {time.monotonic() - started:.1f} s after server start", file=sys.stderr)


def test_vae_cf_deployment_runs_through_the_same_tasks_and_registry(stack):
    tmp = stack.tmp
    where = [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]
    started = time.monotonic()
    run = run_deployment(stack, VAE_DEPLOYMENT, *where, "epochs=3")
    assert run["state"] == "Completed", run["logs"][-3000:]
    assert {"fetch-synth-tiny", "preprocess-synth-tiny", "train-vae-cf", "evaluate-vae-cf"} <= set(
        run["tasks"]
    )
    assert run["tasks"]["fetch-synth-tiny"] in (
        "Cached",
        "Completed",
    )  # Cached after the NCF runs: same raw data
    assert run["tasks"]["preprocess-synth-tiny"] == "Completed"  # another protocol: another output
    keys = set(run["artifacts"])
    for suffix in ("progress", "epochs", "learning-curve", "model-card", "metrics", "bundle"):
        assert f"vae-cf-synth-tiny-{suffix}" in keys, keys
    epochs = run["artifacts"]["vae-cf-synth-tiny-epochs"].data
    rows = json.loads(epochs) if isinstance(epochs, str) else epochs
    assert [row["epoch"] for row in rows] == [0, 1, 2] and "NDCG@100" in rows[0] and "users/s" in rows[0]
    for epoch in range(3):
        (line,) = epoch_lines(run["task_logs"]["train-vae-cf"], epoch)
        assert "NDCG@100" in line and "users/s" in line, line
    champion = tmp / "registry" / "vae-cf" / "synth-tiny" / "v1"
    assert (champion / "model.safetensors").is_file() and (champion / "MODEL_CARD.md").is_file()
    assert json.loads((champion.parent / "champion.json").read_text())["version"] == 1
    result = run["result"]
    assert result["bundle"] == str(champion) and result["ndcg@100"] == result["trainer_ndcg@100"]
    assert 0 <= result["full_hr@10"] <= 1 and 0 <= result["full_ndcg@10"] <= 1, result
    print(f"\nvae-cf run: {run['seconds']:.1f} s in the flow run, {result['seconds']}", file=sys.stderr)

    with stack.expected_failures():
        failed = run_deployment(stack, VAE_DEPLOYMENT, *where, "anneal=bogus")
    assert failed["state"] == "Failed" and "anneal: Input should be" in failed["logs"], failed["logs"][-2000:]
    assert failed["tasks"] == {}, failed["tasks"]  # refused before any task ran
    print(f"vae-cf e2e {time.monotonic() - started:.1f} s", file=sys.stderr)
