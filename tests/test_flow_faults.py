"""Faults on the real stack (tests/e2e_stack.py), through the worker as in production. Training runs
with 2 CPU processes, so torchrun's agent and its two workers are all there to survive or die:

- `prefect flow-run cancel` during training: the run ends Cancelled, no trainer process survives
  (agent and workers), and the registry is unchanged.
- The worker and its flow process SIGKILLed during training: the agent and its workers die with them;
  the run's heartbeats stop, automations.yaml marks it Crashed and schedules it again, a new worker
  runs the same flow run, training resumes from the last checkpoint, and the final weights equal an
  uninterrupted run's, bit for bit (CPU).
- One torchrun worker process SIGKILLed during training: the `train-ncf` task fails, Prefect retries
  it, and it resumes from the checkpoint to the same weights.

Prefect logs a cancelled run's interrupted task as an ERROR ("Crash detected! Execution was aborted
by a termination signal"): the cancellation is provoked, so its lines are excused.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import torch
from e2e_stack import finished_run, parent, prefect, start_run, trainer_pids, wait_until
from safetensors.torch import load_file

from configs.ncf import NCFTrainParams
from ncflow.launch import run_trainer, torchrun_command

DEPLOYMENT = "ncf-train/synth-tiny"
CRASH_EPOCHS = 8  # synth-tiny's default; the worker is killed after the first checkpoint
PROCESSES = "cpu_processes=2"  # torchrun's agent and 2 workers: 3 processes to account for


# The crash tests train the same data with the same settings: without force the later one would stop
# at once ("no new data since v1", flows/training.py) and never start a trainer to crash.
FORCE = "force=true"


def paths_and_processes(tmp: Path) -> list[str]:
    return [*paths(tmp), PROCESSES]


def torchrun_family(out: Path) -> list[int]:
    """The run's agent and its 2 workers, once all 3 are up."""

    def all_three() -> list[int]:
        pids = trainer_pids(out)
        return pids if len(pids) == 3 else []

    return wait_until(all_three, "torchrun's agent and its 2 workers")


def uninterrupted(stack) -> dict[str, torch.Tensor]:
    """The weights of the same training never interrupted: 2 processes, as in the runs above."""
    reference = stack.tmp / "uninterrupted-2"
    if not (reference / "bundle").is_dir():
        config = NCFTrainParams.for_dataset("synth-tiny", epochs=CRASH_EPOCHS).train_config()
        data = next((stack.tmp / "data" / "processed").glob("synth-tiny-ncf-*"))
        run_trainer(torchrun_command("ncf", data, reference, config, 2))
    return load_file(str(reference / "bundle" / "model.safetensors"))


def same_weights(out: Path, stack) -> bool:
    ours, theirs = load_file(str(out / "bundle" / "model.safetensors")), uninterrupted(stack)
    return ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)


def paths(tmp: Path) -> list[str]:
    return [f"data_dir={tmp / 'data'}", f"runs_dir={tmp / 'runs'}", f"registry_dir={tmp / 'registry'}"]


async def read_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def registry_snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cancelling_during_training_stops_every_trainer_and_registers_nothing(stack):
    before = registry_snapshot(stack.tmp / "registry")
    with stack.expected_failures():
        run_id = start_run(stack.env, DEPLOYMENT, *paths_and_processes(stack.tmp), "epochs=1000")
        out = stack.tmp / "runs" / run_id
        wait_until(lambda: (out / "checkpoint.pt").is_file(), "the first checkpoint")  # training, for sure
        torchrun_family(out)
        prefect(stack.env, "flow-run", "cancel", run_id)
        run = stack.call(finished_run, run_id)
    assert run["state"] == "Cancelled", run["logs"][-3000:]
    wait_until(lambda: not trainer_pids(out), "the trainer processes to end", 30)
    assert registry_snapshot(stack.tmp / "registry") == before
    assert not (out / "bundle").exists()


def test_a_killed_worker_run_is_rerun_and_resumes_to_the_same_weights(stack):
    run_id = start_run(
        stack.env, DEPLOYMENT, *paths_and_processes(stack.tmp), f"epochs={CRASH_EPOCHS}", FORCE
    )
    out = stack.tmp / "runs" / run_id
    wait_until(lambda: (out / "checkpoint.pt").is_file(), "the first checkpoint")
    trainers = torchrun_family(out)
    worker = stack.procs[-1]
    flow_processes, pid = [], parent(trainers[0])  # the run's processes between the worker and the trainer
    while pid not in (worker.pid, 1, 0):
        flow_processes.append(pid)
        pid = parent(pid)
    assert pid == worker.pid and flow_processes, "the trainer does not descend from the worker"
    os.killpg(worker.pid, signal.SIGKILL)
    for pid in flow_processes:
        os.kill(pid, signal.SIGKILL)
    worker.wait()
    wait_until(lambda: not trainer_pids(out), "the agent and its workers to die with the flow process", 30)

    stack.start_worker()
    # Crashed (a final state) comes first, then the second automation schedules the run again.
    wait_until(lambda: stack.call(read_run, run_id).run_count >= 2, "the crashed run to run again", 300, 2)
    run = stack.call(finished_run, run_id)
    assert run["state"] == "Completed", run["logs"][-3000:]
    assert run["run"].run_count == 2, run["run"].run_count
    resumed = re.search(r"resuming from the checkpoint: continuing at epoch (\d+)", run["logs"])
    assert resumed and 1 <= int(resumed.group(1)) < CRASH_EPOCHS, run["logs"][-3000:]
    assert run["result"]["epochs"] == CRASH_EPOCHS
    assert same_weights(out, stack)


def test_a_killed_torchrun_worker_fails_the_train_task_which_prefect_retries_and_resumes(stack):
    with stack.expected_failures():  # the failed try is logged as an error, on purpose
        run_id = start_run(
            stack.env, DEPLOYMENT, *paths_and_processes(stack.tmp), f"epochs={CRASH_EPOCHS}", FORCE
        )
        out = stack.tmp / "runs" / run_id
        wait_until(lambda: (out / "checkpoint.pt").is_file(), "the first checkpoint")
        workers = [pid for pid in torchrun_family(out) if "torch.distributed.run" not in _cmdline(pid)]
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        run = stack.call(finished_run, run_id)
    assert run["state"] == "Completed", run["logs"][-3000:]
    assert run["run"].run_count == 1  # the task was retried inside the same flow run
    assert re.search(r"Retry 1/2 will start 10 second\(s\) from now", run["logs"]), run["logs"][-3000:]
    resumed = re.search(r"resuming from the checkpoint: continuing at epoch (\d+)", run["logs"])
    assert resumed and 1 <= int(resumed.group(1)) < CRASH_EPOCHS, run["logs"][-3000:]
    assert run["result"]["epochs"] == CRASH_EPOCHS
    assert same_weights(out, stack)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
