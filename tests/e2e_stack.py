"""The real Prefect stack the end-to-end tests share (tests/conftest.py starts it once): a `prefect server`
with its database in the tests' real PostgreSQL (tests/postgres_server.py), as a production server
(README), the process work pool, automations.yaml, `prefect --no-prompt deploy --all` from
prefect.yaml, and a `prefect worker start`. Every process writes its log to a file; at the end the
server's and every worker's log must hold no traceback and no ERROR line, outside the windows where a
test provokes a failure on purpose (`Stack.expected_failures`): none is excused for the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
POOL = "ncflow-gpu"
RUN_TIMEOUT_S = 420
# automations.yaml says 90 s (3 heartbeats); here just over 2 (30 s is Prefect's minimum period), so one
# late heartbeat (a busy CI machine) does not fail a live run.
LOST_RUN_WITHIN_S = 65
PROBLEM = re.compile(r"Traceback \(most recent call last\)|\bERROR\b")
RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ", re.M)  # where a Prefect log record starts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "a")  # noqa: SIM115 - closed with the process
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


@dataclass
class Stack:
    env: dict
    tmp: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    excused: dict[Path, list[tuple[int, int]]] = field(default_factory=dict)

    def start_worker(self) -> subprocess.Popen:
        log = self.tmp / f"worker{len(self.logs)}.log"
        self.logs.append(log)
        proc = start([PREFECT, "worker", "start", "--pool", POOL], self.env, log)
        self.procs.append(proc)
        return proc

    @contextlib.contextmanager
    def expected_failures(self) -> Iterator[None]:
        """A test provokes failures in this block: the workers' log lines written meanwhile are excused."""
        workers = [log for log in self.logs if log.name.startswith("worker")]
        begin = {log: log.stat().st_size for log in workers}
        yield
        settle(workers)
        for log in workers:
            self.excused.setdefault(log, []).append((begin[log], log.stat().st_size))

    def log_problems(self) -> list[str]:
        """Records with a traceback or ERROR, up to now (call it before stopping: shutdown is noisy)."""
        problems = []
        for log in self.logs:
            text = log.read_bytes()
            for lo, hi in sorted(self.excused.get(log, []), reverse=True):
                text = text[:lo] + text[hi:]
            problems += [
                f"{log.name}: {record[:2000]}"
                for record in records(text.decode(errors="replace"))
                if PROBLEM.search(record)
            ]
        return problems

    def settings(self):
        """Point this process's Prefect client at the stack (an earlier test may have imported Prefect)."""
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

        return temporary_settings(
            updates={PREFECT_API_URL: self.env["PREFECT_API_URL"], PREFECT_HOME: self.env["PREFECT_HOME"]}
        )

    def call(self, coroutine_fn, *args):
        with self.settings():
            return asyncio.run(coroutine_fn(*args))


def records(text: str) -> list[str]:
    """A log's records: a timestamped line with the lines that follow it (a traceback stays whole)."""
    starts = [m.start() for m in RECORD.finditer(text)]
    head = [text[: starts[0]]] if starts else [text]
    return head + [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]


def settle(logs: list[Path], quiet_s: float = 2.0, limit_s: float = 30.0) -> None:
    """Wait until the logs stop growing: a finished run's process may still be writing its last lines."""
    deadline = time.monotonic() + limit_s
    sizes = None
    while time.monotonic() < deadline:
        now = [log.stat().st_size for log in logs]
        if now == sizes:
            return
        sizes = now
        time.sleep(quiet_s)


def start_stack(tmp: Path, database_url: str) -> Stack:
    """`database_url` (postgresql+asyncpg://...) reaches the server's environment only: the workers, the
    flow runs and `Stack.env` never hold the password."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_HOME": str(tmp / "home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the default 15 s poll would dominate the test
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    env.pop("PREFECT_PROFILE", None)
    stack = Stack(env, tmp)
    stack.logs.append(tmp / "server.log")
    server = start(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "PREFECT_API_DATABASE_CONNECTION_URL": database_url},
        stack.logs[0],
    )
    stack.procs.append(server)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise AssertionError("prefect server did not start:\n" + stack.logs[0].read_text()[-3000:])
        time.sleep(0.5)
    prefect(env, "work-pool", "create", POOL, "--type", "process")
    prefect(env, "work-pool", "set-concurrency-limit", POOL, "1")
    automations = yaml.safe_load((REPO / "automations.yaml").read_text())
    for automation in automations["automations"]:
        automation["trigger"]["within"] = LOST_RUN_WITHIN_S
    (tmp / "automations.yaml").write_text(yaml.safe_dump(automations))
    prefect(env, "automation", "create", "--from-file", str(tmp / "automations.yaml"))
    prefect(env, "--no-prompt", "deploy", "--all")
    stack.start_worker()
    return stack


def stop_stack(stack: Stack) -> None:
    for proc in reversed(stack.procs):
        stop(proc)


# ------------------------------------------------------------------------------------------- processes
def trainer_pids(out_dir: Path) -> list[int]:
    """Live processes whose command line names `out_dir` (a run's trainer, torchrun and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(out_dir) in cmdline and "models." in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_until(check, what: str, limit_s: float = RUN_TIMEOUT_S, every_s: float = 0.2):
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up after {limit_s:.0f} s waiting for {what}"
        time.sleep(every_s)


# ------------------------------------------------------------------------------------------------ runs
def start_run(env: dict, deployment: str, *params: str) -> str:
    """`prefect deployment run` with `--param`s; the flow run's id."""
    args = [p for param in params for p in ("--param", param)]
    out = prefect(env, "deployment", "run", deployment, *args).stdout
    return re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)


async def finished_run(flow_run_id: str, limit_s: float = RUN_TIMEOUT_S) -> dict:
    """Wait for the run's final state; its state, tasks, artifacts (latest per key), logs and result."""
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
        deadline = time.monotonic() + limit_s
        while True:
            run = await client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                break
            assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state} after {limit_s} s"
            await asyncio.sleep(1)
        ids = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        # Task states reach the server as events, after the flow's own: wait (briefly) for them too.
        task_deadline = time.monotonic() + 30
        while True:
            tasks = await client.read_task_runs(flow_run_filter=ids)
            if all(t.state and t.state.is_final() for t in tasks) or time.monotonic() > task_deadline:
                break
            await asyncio.sleep(0.5)
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
        "run": run,
        "state": run.state.name,
        "seconds": run.total_run_time.total_seconds(),
        "tasks": {t.name: t.state.name for t in sorted(tasks, key=lambda t: t.created)},  # latest per name
        "artifacts": {a.key: a for a in sorted(artifacts, key=lambda a: a.created) if a.key},
        "task_logs": {
            t.name: [e.message for e in logs if e.task_run_id == t.id]
            for t in sorted(tasks, key=lambda t: t.created)
        },
        "logs": "\n".join(entry.message for entry in logs),
        "result": result,
        "versions": Counter(a.key for a in artifacts if a.key),  # artifacts per key, in this run
    }


def run_deployment(stack: Stack, deployment: str, *params: str) -> dict:
    return stack.call(finished_run, start_run(stack.env, deployment, *params))
