"""End to end, the production path: a real `prefect server`, `prefect deploy` from prefect.yaml, a
process worker, `prefect deployment run ncf-train/synth-tiny`; then the task runs, artifacts and the
registered bundle read back through the Prefect client. A second run finds its data tasks Cached;
bad parameters fail the run within seconds, with the reason in its logs. The same server and worker
then run `vae-cf-train/synth-tiny` (a tiny Mult-VAE, 3 epochs): the same tasks, artifacts and registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
POOL, DEPLOYMENT, VAE_DEPLOYMENT = "ncflow-gpu", "ncf-train/synth-tiny", "vae-cf-train/synth-tiny"
RUN_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    proc.log_handle = handle  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen) -> None:
    """End the process and its children (it leads its own session: the worker's flow runs are in it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.log_handle.close()  # type: ignore[attr-defined]


def prefect(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the default 15 s poll would dominate the test
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    env.pop("PREFECT_PROFILE", None)
    procs = [
        start(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, tmp / "server.log"
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise AssertionError(
                    "prefect server did not start:\n" + (tmp / "server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        prefect(env, "work-pool", "create", POOL, "--type", "process")
        prefect(env, "work-pool", "set-concurrency-limit", POOL, "1")
        prefect(env, "--no-prompt", "deploy", "--name", DEPLOYMENT, "--name", VAE_DEPLOYMENT)
        procs.append(start([PREFECT, "worker", "start", "--pool", POOL], env, tmp / "worker.log"))
        yield env, tmp
    finally:
        for proc in reversed(procs):
            stop(proc)


async def _wait(flow_run_id: str) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            run = await client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                break
            assert time.monotonic() < deadline, (
                f"flow run {flow_run_id} still {run.state} after {RUN_TIMEOUT_S} s"
            )
            await asyncio.sleep(1)
        ids = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        tasks = await client.read_task_runs(flow_run_filter=ids)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        # The run's process ships its logs in batches and may still be flushing them after the state is
        # final: wait (briefly) for the engine's last line, "Finished in state ...".
        log_deadline = time.monotonic() + 15
        while True:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            if any(e.message.startswith("Finished in state") and e.task_run_id is None for e in logs):
                break
            if time.monotonic() > log_deadline:
                break
            await asyncio.sleep(0.5)
        result = await run.state.result(raise_on_failure=False) if run.state.is_completed() else None
    return {
        "state": run.state.name,
        "seconds": run.total_run_time.total_seconds(),
        "tasks": {t.name: t.state.name for t in tasks},
        "artifacts": {
            a.key: a for a in sorted(artifacts, key=lambda a: a.created) if a.key
        },  # latest per key
        "logs": "\n".join(entry.message for entry in logs),
        "result": result,
        "versions": Counter(a.key for a in artifacts if a.key),  # per key, in this run
    }


def run_deployment(env: dict, *params: str, deployment: str = DEPLOYMENT) -> dict:
    args = [p for param in params for p in ("--param", param)]
    out = prefect(env, "deployment", "run", deployment, *args).stdout
    flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    # Prefect reads its settings once per process (an earlier test may have imported it): set them here.
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    with temporary_settings(
        updates={PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_HOME: env["PREFECT_HOME"]}
    ):
        return asyncio.run(_wait(flow_run_id))


def test_deployment_runs_caches_registers_and_refuses_bad_parameters(server):
    env, tmp = server
    where = [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]
    started = time.monotonic()
    first = run_deployment(env, *where, "epochs=3")
    assert first["state"] == "Completed", first["logs"][-3000:]
    assert set(first["tasks"].values()) == {"Completed"}, first["tasks"]
    assert {"fetch-synth-tiny", "preprocess-synth-tiny", "train-ncf", "evaluate-ncf"} <= set(first["tasks"])
    keys = set(first["artifacts"])
    for suffix in ("progress", "epochs", "learning-curve", "model-card", "metrics", "bundle"):
        assert f"ncf-synth-tiny-{suffix}" in keys, keys
    epochs = first["artifacts"]["ncf-synth-tiny-epochs"].data
    rows = json.loads(epochs) if isinstance(epochs, str) else epochs
    assert [row["epoch"] for row in rows] == [0, 1, 2] and "NDCG@10" in rows[0]
    # the table and the curve are rewritten in place each epoch: one artifact per run, not one per epoch
    assert (
        first["versions"]["ncf-synth-tiny-epochs"] == first["versions"]["ncf-synth-tiny-learning-curve"] == 1
    )
    assert "3 of at most 3 epochs done" in first["artifacts"]["ncf-synth-tiny-learning-curve"].data
    assert "fresh negatives" in first["logs"] and "epoch   2" in first["logs"]  # the trainer's own lines
    champion = tmp / "registry" / "ncf" / "synth-tiny" / "v1"
    assert (champion / "model.safetensors").is_file() and (champion / "MODEL_CARD.md").is_file()
    assert json.loads((champion.parent / "champion.json").read_text())["version"] == 1
    result = first["result"]
    assert result["bundle"] == str(champion) and result["hr@10"] == result["trainer_hr@10"]
    for name in ("full_hr@10", "full_ndcg@10", "full_recall@20"):  # full ranking beside the sampled metrics
        assert 0 <= result["popularity_" + name] <= 1 and 0 <= result[name] <= 1, result
    assert "### Full ranking" in (champion / "MODEL_CARD.md").read_text()
    print(f"\nfirst run: {first['seconds']:.1f} s in the flow run, {result['seconds']}", file=sys.stderr)

    second = run_deployment(env, *where, "epochs=3")
    assert second["state"] == "Completed", second["logs"][-3000:]
    assert (
        second["tasks"]["fetch-synth-tiny"] == "Cached"
        and second["tasks"]["preprocess-synth-tiny"] == "Cached"
    )
    assert second["result"]["version"] == 2 and not second["result"]["promoted"]  # same score: not better
    print(f"second run: {second['seconds']:.1f} s, {second['result']['seconds']}", file=sys.stderr)

    for bad, message in [
        ("dataset=nope", "unknown dataset 'nope'"),
        ("epochs=0", "epochs: Input should be greater than or equal to 1"),
        ("gpus=64", "gpus=64 asked for"),
    ]:
        failed = run_deployment(env, *where, bad)
        assert failed["state"] == "Failed" and message in failed["logs"], (bad, failed["logs"][-2000:])
        assert failed["tasks"] == {}, failed["tasks"]  # refused before any task ran
    print(f"e2e total {time.monotonic() - started:.1f} s after server start", file=sys.stderr)


def test_vae_cf_deployment_runs_through_the_same_tasks_and_registry(server):
    env, tmp = server
    where = [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]
    started = time.monotonic()
    run = run_deployment(env, *where, "epochs=3", deployment=VAE_DEPLOYMENT)
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
    assert "NDCG@100" in run["logs"] and "epoch   2" in run["logs"]  # the trainer's own lines
    champion = tmp / "registry" / "vae-cf" / "synth-tiny" / "v1"
    assert (champion / "model.safetensors").is_file() and (champion / "MODEL_CARD.md").is_file()
    assert json.loads((champion.parent / "champion.json").read_text())["version"] == 1
    result = run["result"]
    assert result["bundle"] == str(champion) and result["ndcg@100"] == result["trainer_ndcg@100"]
    assert 0 <= result["full_hr@10"] <= 1 and 0 <= result["full_ndcg@10"] <= 1, result
    print(f"\nvae-cf run: {run['seconds']:.1f} s in the flow run, {result['seconds']}", file=sys.stderr)

    failed = run_deployment(env, *where, "anneal=bogus", deployment=VAE_DEPLOYMENT)
    assert failed["state"] == "Failed" and "anneal: Input should be" in failed["logs"], failed["logs"][-2000:]
    assert failed["tasks"] == {}, failed["tasks"]  # refused before any task ran
    print(f"vae-cf e2e {time.monotonic() - started:.1f} s", file=sys.stderr)
