"""Training over several machines (ncflow/nodes.py, ncflow/node_agents.py) on a real Dask cluster: a
`dask scheduler` and two `dask worker` processes on 127.0.0.1 stand in for two hosts; each node runs a
real torchrun agent with one gloo process.

- 2 nodes x 1 process train the same weights, bit for bit, as 1 node x 2 processes (same seed, same
  world size): through `ncflow train ncf --nodes 2 --scheduler ...`, through a deployment run by a
  real Prefect worker, and for VAE-CF. Were ranks taken from LOCAL_RANK, both nodes would train shard 0.
- One node's torchrun agent killed mid-run: Dask starts it again, it rejoins the rendezvous, torchrun
  restarts the group, training resumes from the checkpoint and ends with the same weights.
- A node that never joins: the run fails after the rendezvous timeout with one line naming it, and
  the Prefect run ends Failed with that line.
- A node that cannot see runs_dir (a worker in a mount namespace of its own): one line, before any epoch.
- A node's worker process lost: the attempt fails at once, retryable. A cancelled run: every agent stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from e2e_stack import (
    REPO,
    finished_run,
    free_port,
    parent,
    prefect,
    run_deployment,
    start,
    start_run,
    stop,
    trainer_pids,
    wait_until,
)
from safetensors.torch import load_file

from configs.ncf import NCFTrainParams
from configs.vaecf import VAECFTrainParams
from ncflow.cli import main as cli
from ncflow.errors import NcflowError
from ncflow.launch import TrainerFailed, run_trainer, torchrun_command
from ncflow.node_agents import train_on_nodes
from ncflow.nodes import address_host, place_nodes
from tasks.data import fetch_raw, preprocess_data

EPOCHS = 6  # enough for a node to be killed after the first checkpoint and well before the end
NCF = NCFTrainParams.for_dataset("synth-tiny", epochs=EPOCHS, cpu_processes=1)
VAE = VAECFTrainParams.for_dataset("synth-tiny", epochs=2)
DASK = str(Path(sys.executable).parent / "dask")


# --------------------------------------------------------------------------- placement, no cluster
def test_nodes_go_to_distinct_hosts_first_and_share_a_host_fairly():
    workers = {
        "tcp://10.0.0.1:1": {"host": "a", "gpus": ["0", "1"], "cores": 32},
        "tcp://10.0.0.1:2": {"host": "a", "gpus": ["1", "0"], "cores": 32},  # dask-cuda's rotated view
        "tcp://10.0.0.2:1": {"host": "b", "gpus": ["0", "1"], "cores": 32},
    }
    two = place_nodes(workers, 2, gpus=2, cpu_processes=1)
    assert [n.host for n in two] == ["a", "b"] and [n.processes for n in two] == [2, 2]
    assert [n.env["CUDA_VISIBLE_DEVICES"] for n in two] == ["0,1", "0,1"]
    assert two[0].address == "10.0.0.1" and two[0].rank == 0
    three = place_nodes(workers, 3, gpus=1, cpu_processes=1)  # host a holds two nodes: one GPU each
    on_a = [n for n in three if n.host == "a"]
    assert sorted(n.env["CUDA_VISIBLE_DEVICES"] for n in on_a) == ["0", "1"]
    assert {n.env["NCFLOW_HOST_PROCESSES"] for n in on_a} == {"2"}
    cpu = place_nodes(workers, 3, gpus=0, cpu_processes=2)
    assert "CUDA_VISIBLE_DEVICES" not in cpu[0].env and {n.processes for n in cpu} == {2}
    with pytest.raises(NcflowError, match="nodes=4 asked for, but the Dask cluster has 3 worker"):
        place_nodes(workers, 4, gpus=0, cpu_processes=1)
    with pytest.raises(NcflowError, match="host a has 2 GPU.*too few for 2 node"):
        place_nodes(workers, 3, gpus=2, cpu_processes=1)
    assert address_host("tls://[::1]:8786") == "::1"


def test_nodes_need_sane_values():
    with pytest.raises(NcflowError, match="scheduler"):
        NCFTrainParams.for_dataset("synth-tiny", scheduler="10.0.0.5:8786")  # no scheme
    with pytest.raises(NcflowError, match="nodes"):
        NCFTrainParams.for_dataset("synth-tiny", nodes=0)


def test_a_cluster_that_does_not_answer_fails_the_run_with_one_line_and_no_retry(
    data, prefect_server, tmp_path, capsys
):
    nobody = f"tcp://127.0.0.1:{free_port()}"
    args = ["train", "ncf", "--dataset", "synth-tiny", "--nodes", "2", "--scheduler", nobody,
            "--data-dir", str(data[0]), "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    started = time.monotonic()
    assert cli(args) == 2
    assert f"no Dask scheduler answered at {nobody}" in capsys.readouterr().err
    assert time.monotonic() - started < 60  # not retried (the task's retries wait 10 s, then 60 s)


# ------------------------------------------------------------------------------------ the cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker`s, each a process of its own on 127.0.0.1."""
    from distributed import Client

    tmp = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [start([DASK, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                     "--no-dashboard"], env, tmp / "scheduler.log")]  # fmt: skip
    procs += [start(_worker(address, f"w{i}"), env, tmp / f"w{i}.log") for i in range(2)]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            yield client
    finally:
        for proc in reversed(procs):
            stop(proc)


def _worker(address: str, name: str) -> list[str]:
    return [DASK, "worker", address, "--nthreads", "1", "--no-dashboard", "--name", name]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = fetch_raw.fn("synth-tiny", str(root))
    ncf = preprocess_data.fn("synth-tiny", raw, str(root), NCF.preprocess_config())
    vae = preprocess_data.fn("synth-tiny", raw, str(root), VAE.preprocess_config())
    return root, Path(ncf), Path(vae)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One node with 2 gloo processes: the weights every 2-node run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "ncf"
    run_trainer(torchrun_command("ncf", data[1], out, NCF.train_config(), 2))
    return weights(out)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "bundle" / "model.safetensors"))


def same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> bool:
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def on_nodes(client, package: str, data_dir: Path, out: Path, config: dict, **options):
    lines: list[str] = []
    run = train_on_nodes(
        client, package, data_dir, out, config, nodes=options.pop("nodes", 2), gpus=0, cpu_processes=1,
        run_id=out.name, on_line=lines.append, **options,
    )  # fmt: skip
    return run, lines


# ----------------------------------------------------------------------------------- the tests
def test_two_nodes_through_the_cli_train_the_weights_of_one_node_with_two_processes(
    cluster, data, reference, prefect_server, tmp_path
):
    root = data[0]
    args = ["train", "ncf", "--dataset", "synth-tiny", "--epochs", str(EPOCHS), "--nodes", "2",
            "--scheduler", cluster.scheduler.address, "--data-dir", str(root),
            "--runs-dir", str(tmp_path / "runs"), "--registry-dir", str(tmp_path / "registry")]  # fmt: skip
    assert cli(args) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert same(weights(run), reference)
    assert not (run / ".nodes-see-this").exists()  # the launcher's visibility check leaves nothing


def test_a_killed_node_agent_rejoins_and_training_ends_with_the_same_weights(
    cluster, data, reference, tmp_path
):
    out = tmp_path / "killed"
    result: dict = {}

    def train() -> None:
        try:
            result["run"], result["lines"] = on_nodes(cluster, "ncf", data[1], out, NCF.train_config())
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            result["error"] = err

    thread = threading.Thread(target=train)
    thread.start()
    wait_until(
        lambda: (out / "checkpoint.pt").is_file() or not thread.is_alive(), "the first checkpoint", 300
    )
    agents = [pid for pid in trainer_pids(out) if _is_agent(pid, host=False)]
    assert len(agents) == 1, "node 1's torchrun agent not found"
    os.kill(agents[0], signal.SIGKILL)
    thread.join(timeout=400)
    assert "error" not in result, result.get("error")
    run, lines = result["run"], result["lines"]
    resumed = [e["epoch"] for e in run.events if e["event"] == "resume"]
    assert len(resumed) == 1 and 1 <= resumed[0] < EPOCHS, resumed
    assert any("node 1: its torchrun agent was killed (signal 9)" in line for line in lines)
    assert run.done["epochs"] == EPOCHS
    assert same(weights(out), reference)


def test_a_lost_worker_machine_fails_the_attempt_for_a_retry_elsewhere(cluster, data, tmp_path):
    """Node 1's Dask worker process killed (its nanny starts a new one, at another address): the
    attempt fails at once, retryable, instead of waiting for that worker for ever."""
    out = tmp_path / "lost"
    result: dict = {}

    def train() -> None:
        try:
            on_nodes(cluster, "ncf", data[1], out, NCF.train_config())
        except BaseException as err:  # noqa: BLE001 - checked below
            result["error"] = err

    thread = threading.Thread(target=train)
    thread.start()
    wait_until(
        lambda: (out / "checkpoint.pt").is_file() or not thread.is_alive(), "the first checkpoint", 300
    )
    (agent,) = [pid for pid in trainer_pids(out) if _is_agent(pid, host=False)]
    os.kill(parent(agent), signal.SIGKILL)  # the worker process that runs node 1's agent
    thread.join(timeout=300)
    failed = result.get("error")
    assert isinstance(failed, TrainerFailed) and failed.retryable, failed
    assert "node 1's worker tcp://127.0.0.1:" in str(failed) and "left the Dask cluster" in str(failed)
    wait_until(lambda: not trainer_pids(out), "every agent and trainer of the attempt to end", 60)
    cluster.wait_for_workers(2, timeout=120)  # the nanny's new worker, for the tests after this one


def _is_agent(pid: int, host: bool) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return "torch.distributed.run" in cmdline and f"is_host={str(host).lower()}" in cmdline


def test_vaecf_trains_on_two_nodes_as_on_two_processes(cluster, data, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "nodes"
    run_trainer(torchrun_command("vaecf", data[2], ref, VAE.train_config(), 2))
    run, _ = on_nodes(cluster, "vaecf", data[2], out, VAE.train_config())
    begun = next(e for e in run.events if e["event"] == "start")
    assert begun["world_size"] == 2 and run.done is not None
    assert same(weights(out), weights(ref))


def test_a_node_that_never_joins_fails_the_flow_run_after_the_rendezvous_timeout(
    cluster, data, prefect_server, tmp_path
):
    from distributed import Event

    from flows.ncf_train import ncf_train

    busy_worker = sorted(cluster.scheduler_info(n_workers=-1)["workers"])[1]  # node 1's
    release = Event(f"release-{tmp_path.name}", client=cluster)
    hold = cluster.submit(release.wait, 300, workers=[busy_worker], pure=False)  # its only thread, taken
    try:
        started = time.monotonic()
        state = ncf_train(
            dataset="synth-tiny", epochs=2, nodes=2, scheduler=cluster.scheduler.address, rendezvous_timeout=5,
            data_dir=str(data[0]), runs_dir=str(tmp_path / "runs"), registry_dir=str(tmp_path / "registry"),
            return_state=True,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        release.set()
        hold.result(timeout=60)
    assert state.is_failed(), state
    line = "error: the rendezvous at 127.0.0.1:"
    assert line in state.message and f"node 1 (worker {busy_worker}) never started its agent" in state.message
    assert took < 120  # the timeout, not a hang (torchrun's default is 600 s)
    (run,) = (tmp_path / "runs").iterdir()
    wait_until(lambda: not trainer_pids(run), "node 0's agent to end", 30)
    assert not (tmp_path / "registry").exists()


def test_a_node_that_cannot_see_runs_dir_fails_at_the_start_with_one_line(cluster, data, tmp_path):
    """A third worker in a mount namespace of its own, where runs_dir is a local, empty folder."""
    runs = tmp_path / "runs"
    runs.mkdir()
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -m is not permitted here (no CAP_SYS_ADMIN)")
    mount = f"mount -t tmpfs tmpfs {runs} && exec " + " ".join(_worker(cluster.scheduler.address, "private"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    private = start(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", mount], env, tmp_path / "private.log"
    )
    try:
        cluster.wait_for_workers(3, timeout=120)
        out = runs / "r1"
        with pytest.raises(TrainerFailed) as failed:
            on_nodes(cluster, "ncf", data[1], out, NCF.train_config(), nodes=3)
        (line,) = failed.value.errors
        assert line.startswith("error: node ") and "(host " in line and "worker tcp://127.0.0.1:" in line
        assert line.endswith(
            f"cannot see the run folder {out}: runs_dir must be a shared disk that every node reaches at the same path"
        )
        assert not failed.value.retryable and not (out / "checkpoint.pt").exists()
        wait_until(lambda: not trainer_pids(out), "the other nodes' agents to end", 30)
    finally:
        stop(private)
        wait_until(
            lambda: len(cluster.scheduler_info(n_workers=-1)["workers"]) == 2, "the worker to leave", 60
        )


def test_two_nodes_through_a_deployment_on_a_real_worker(cluster, reference, stack):
    where = [f"{name}_dir={stack.tmp / name}" for name in ("data", "runs", "registry")]
    run = run_deployment(
        stack,
        "ncf-train/synth-tiny",
        *where,
        f"epochs={EPOCHS}",
        "nodes=2",
        f"scheduler={cluster.scheduler.address}",
    )
    assert run["state"] == "Completed", run["logs"][-3000:]
    assert "2 nodes, rendezvous 127.0.0.1:" in run["logs"] and run["result"]["epochs"] == EPOCHS
    trained = stack.tmp / "runs" / str(run["run"].id)
    assert same(weights(trained), reference)


def test_cancelling_a_two_node_run_stops_the_agents_on_the_dask_workers(cluster, stack):
    """`prefect flow-run cancel` ends the flow process and with it its Dask client: the workers mark
    the agent tasks cancelled and each stops its agent, whose trainers follow."""
    where = [f"{name}_dir={stack.tmp / name}" for name in ("data", "runs", "registry")]
    with stack.expected_failures():
        run_id = start_run(
            stack.env,
            "ncf-train/synth-tiny",
            *where,
            "epochs=1000",
            "nodes=2",
            f"scheduler={cluster.scheduler.address}",
        )
        out = stack.tmp / "runs" / run_id
        wait_until(lambda: (out / "checkpoint.pt").is_file(), "the first checkpoint")
        assert len([pid for pid in trainer_pids(out) if "torch.distributed.run" in _cmdline(pid)]) == 2
        prefect(stack.env, "flow-run", "cancel", run_id)
        run = stack.call(finished_run, run_id)
    assert run["state"] == "Cancelled", run["logs"][-3000:]
    wait_until(lambda: not trainer_pids(out), "both agents and their trainers to end", 60)
    assert not (out / "bundle").exists()


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
