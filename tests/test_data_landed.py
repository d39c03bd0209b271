"""Event-driven retraining on the shared real stack (tests/e2e_stack.py): prefect.yaml's `triggers:`.

- `prefect --no-prompt deploy --all` links each training deployment to an automation that runs it on
  the event `ncflow.data.landed` about the resource `ncflow.dataset.<its dataset>`, and nothing else.
- The README's line for an upstream ETL job (`prefect event emit ...`) starts a run of both synth-tiny
  training deployments, which the worker takes to Completed; the README's Python equivalent
  (`emit_event`) reaches the server too, and its event, about a dataset no deployment trains, starts
  nothing.
- The commented `shop` deployment's trigger is valid for Prefect's own schema, key by key.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import yaml
from e2e_stack import REPO, finished_run, prefect, wait_until

LANDED = "ncflow.data.landed"
SYNTH_TINY = ("ncf-train/synth-tiny", "vae-cf-train/synth-tiny")  # the deployments of dataset synth-tiny
FLOWS = {"flows/ncf_train.py:ncf_train": "ncf-train", "flows/vaecf_train.py:vae_cf_train": "vae-cf-train"}
# What an upstream ETL job runs in Python (README, "New data: retraining on an event").
EMIT = (
    "from prefect.events import emit_event\n"
    "emit_event(event='ncflow.data.landed', resource={'prefect.resource.id': 'ncflow.dataset.events'})\n"
)


def training_deployments() -> dict[str, dict]:
    """prefect.yaml's training deployments by full name (`ncf-train/ml20m`), with their spec."""
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return {
        f"{FLOWS[d['entrypoint']]}/{d['name']}": d for d in spec["deployments"] if d["entrypoint"] in FLOWS
    }


async def deployment_automations(names: list[str]) -> dict[str, tuple]:
    """Each deployment and the automations it owns (those `prefect deploy` made from its triggers)."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        found = {}
        for name in names:
            deployment = await client.read_deployment_by_name(name)
            related = await client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
            found[name] = deployment, related
        return found


def test_deploy_all_links_every_training_deployment_to_its_data_landed_event(stack):
    deployments = training_deployments()
    found = stack.call(deployment_automations, list(deployments))
    for name, spec in deployments.items():
        deployment, automations = found[name]
        assert [a.name for a in automations] == [f"{name} on new {spec['parameters']['dataset']} data"], name
        (automation,) = automations
        trigger, (action,) = automation.trigger, automation.actions
        assert automation.enabled and trigger.type == "event" and trigger.posture == "Reactive", automation
        assert trigger.expect == {LANDED} and trigger.threshold == 1, trigger
        assert trigger.match.model_dump() == {
            "prefect.resource.id": f"ncflow.dataset.{spec['parameters']['dataset']}"
        }
        assert action.type == "run-deployment" and action.deployment_id == deployment.id, action
        assert action.parameters is None  # the deployment's own parameters, as its cron runs


async def runs_since(since: dt.datetime, deployment_names: tuple[str, ...] = ()) -> list:
    """The flow runs meant to start from `since` until now (of the named deployments, if any): the cron's
    Scheduled runs, days ahead, are not among them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    window = FlowRunFilter(
        expected_start_time=FlowRunFilterExpectedStartTime(after_=since, before_=dt.datetime.now(dt.UTC))
    )
    async with get_client() as client:
        ids = [(await client.read_deployment_by_name(name)).id for name in deployment_names]
        deployments = DeploymentFilter(id=DeploymentFilterId(any_=ids)) if ids else None
        return await client.read_flow_runs(flow_run_filter=window, deployment_filter=deployments)


async def set_defaults(names: tuple[str, ...], updates: dict) -> dict[str, dict]:
    """Merge `updates` into the deployments' default parameters; their previous parameters."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    async with get_client() as client:
        before = {}
        for name in names:
            deployment = await client.read_deployment_by_name(name)
            before[name] = deployment.parameters
            parameters = {**deployment.parameters, **updates}
            await client.update_deployment(deployment.id, DeploymentUpdate(parameters=parameters))
        return before


async def restore_defaults(parameters: dict[str, dict]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    async with get_client() as client:
        for name, params in parameters.items():
            deployment = await client.read_deployment_by_name(name)
            await client.update_deployment(deployment.id, DeploymentUpdate(parameters=params))


async def landed_events(resource_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    async with get_client() as client:
        page = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[LANDED]), resource=EventResourceFilter(id=[resource_id])
            ),
            limit=10,  # the client's default (100) is above the server's maximum (50)
        )
    return page.events


def test_a_data_landed_event_retrains_that_dataset_and_no_other(stack):
    """A trigger runs a deployment with its own parameters: here they point at this test's folders, with
    one epoch, and are restored after. Every flow run meant to start after the events (the cron's are
    days ahead) must be one of the two synth-tiny runs."""
    where = stack.tmp / "landed"
    before = stack.call(
        set_defaults,
        SYNTH_TINY,
        {"epochs": 1, "data_dir": str(where / "data"), "runs_dir": str(where / "runs"),
         "registry_dir": str(where / "registry")},
    )  # fmt: skip
    try:
        since = dt.datetime.now(dt.UTC)
        emitted = subprocess.run(
            [sys.executable, "-c", EMIT], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=120
        )
        assert emitted.returncode == 0, emitted.stderr
        out = prefect(stack.env, "event", "emit", LANDED, "--resource-id", "ncflow.dataset.synth-tiny").stdout
        assert f"emitted event '{LANDED}'" in out, out
        started = wait_until(
            lambda: len(runs := stack.call(runs_since, since, SYNTH_TINY)) == len(SYNTH_TINY) and runs,
            "a run of each synth-tiny training deployment",
            120,
            0.5,
        )
        finished = [stack.call(finished_run, str(run.id)) for run in started]
    finally:
        stack.call(restore_defaults, before)
    made_by = {(run.created_by.type, run.created_by.display_value) for run in started if run.created_by}
    assert made_by == {("AUTOMATION", f"{name} on new synth-tiny data") for name in SYNTH_TINY}, made_by
    for run in finished:
        assert run["state"] == "Completed", run["logs"][-3000:]
    for model in ("ncf", "vae-cf"):
        assert (where / "registry" / model / "synth-tiny" / "v1" / "model.safetensors").is_file(), model
    # The other event reached the server (the Python line works) and started nothing.
    assert len(wait_until(lambda: stack.call(landed_events, "ncflow.dataset.events"), "its event", 30)) == 1
    made = stack.call(runs_since, since)
    assert sorted(run.id for run in made) == sorted(run.id for run in started), [
        (run.name, run.deployment_id) for run in made
    ]


def commented_shop_deployment() -> dict:
    """prefect.yaml's commented `shop` deployment, uncommented."""
    text = (REPO / "prefect.yaml").read_text()
    block = re.search(r"^  # - name: shop\n(?:^  # .*\n)+", text, re.M).group(0)
    lines = [line[4:] for line in block.splitlines() if "*gpu_pool" not in line]  # an alias defined above
    return yaml.safe_load("\n".join(lines))[0]


def test_the_shop_example_trigger_is_valid_for_prefect():
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    shop = commented_shop_deployment()
    assert shop["parameters"]["dataset"] == "/lake/events/"  # its dataset's label is the folder's name
    (spec,) = shop["triggers"]
    trigger = TypeAdapter(DeploymentTriggerTypes).validate_python(spec)  # as `prefect deploy` reads it
    assert set(spec) <= set(type(trigger).model_fields)  # Prefect ignores unknown keys
    assert trigger.expect == {LANDED} and trigger.match.model_dump() == {
        "prefect.resource.id": "ncflow.dataset.events"
    }
