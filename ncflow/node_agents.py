"""A training run over several machines: one torchrun agent per node, each a Dask task on the worker
that ncflow/nodes.py chose, their output streamed back to the caller as if one trainer ran here.

    with dask_client(scheduler="tcp://10.0.0.5:8786") as client:
        run = train_on_nodes(client, "ncf", data, out, config, nodes=2, gpus=8, cpu_processes=1, run_id=ID)

Who does what (nothing here relaunches what torchrun or Dask already do):
- torchrun: the c10d rendezvous, global ranks, and after a lost process or node (its workers' collectives
  fail) the restart of the whole group, `--max-restarts` times; the trainer resumes from its checkpoint.
- Dask: where each agent runs (pinned to its worker) and, when an agent process is killed, running its
  task again on the same worker (`retries`): the new agent joins the same rendezvous id.
- Here: the check that every node sees the data and the run folder before any agent starts; rank 0's
  events and every node's stderr, forwarded through Dask's event topics (Worker.log_event); the end of
  every agent when one node fails for good, when the caller stops, or when the caller dies (its
  futures are released, the worker marks the task cancelled, and `stop_when` sees it).
- A node that never joins: node 0's agent gives up after `join_timeout_s` (torchrun's
  RendezvousTimeoutError), reported as one line naming the node that never started.
"""

from __future__ import annotations

import queue
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ncflow.atomic import atomic_file
from ncflow.launch import STDERR_TAIL, TrainerFailed, TrainerRun, run_trainer, trainer_args
from ncflow.nodes import (
    CHECK_FILE,
    MAX_RESTARTS,
    Node,
    agent_args,
    check_node_sees,
    describe_worker,
    endpoint_address,
    free_port,
    place_nodes,
)

REPO = Path(__file__).resolve().parents[1]  # the agents run the trainer from the same checkout path
ENDS_WITHIN_S = 10.0  # after the last agent task finished, for its last forwarded lines to arrive
WORKERS_CHECKED_EVERY_S = 2.0  # is every node's worker still in the cluster?


class AgentLost(RuntimeError):
    """A node's torchrun agent was killed: Dask runs its task again and the new agent rejoins."""


def run_agent(
    args: list[str], env: Mapping[str, str], node: Node, topic: str, data_dir: str, out_dir: str, token: str
) -> dict[str, Any]:
    """On the node's Dask worker: check what the node must see, run its torchrun agent with this
    worker's Python, forward its output to `topic`; return its exit status, last lines and errors."""
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()

    def say(kind: str, payload: Any = None) -> None:
        worker.log_event(topic, {"node": node.rank, "kind": kind, "payload": payload})

    def cancelled() -> bool:  # the caller stopped, failed or died: its futures were released
        task = worker.state.tasks.get(key)
        return task is None or task.state not in ("executing", "long-running")

    problem = check_node_sees(Path(data_dir), Path(out_dir), token, node)
    if problem is not None:
        say("end")
        return {"node": node.rank, "returncode": 2, "tail": [problem], "errors": [problem]}
    say("started")
    try:
        run_trainer(
            [sys.executable, *args], on_event=lambda event: say("event", event),
            on_line=lambda line: say("line", f"node {node.rank}: {line}"), env=env, cwd=REPO,
            require_done=False, stop_when=cancelled,
        )  # fmt: skip
        result = {"node": node.rank, "returncode": 0, "tail": [], "errors": []}
    except TrainerFailed as err:
        if err.returncode < 0 and not cancelled():  # killed by a signal, from outside: start it again
            say("line", f"node {node.rank}: its torchrun agent was killed (signal {-err.returncode})")
            raise AgentLost(f"node {node.rank}'s agent was killed (signal {-err.returncode})") from None
        result = {"node": node.rank, "returncode": err.returncode, "tail": err.tail, "errors": err.errors}
    say("end")
    return result


def train_on_nodes(
    client,
    model: str,
    data_dir: Path,
    out_dir: Path,
    config: Mapping[str, Any],
    *,
    nodes: int,
    gpus: int,
    cpu_processes: int,
    run_id: str,
    join_timeout_s: int = 600,
    on_event: Callable[[dict], None] = lambda event: None,
    on_line: Callable[[str], None] = lambda line: None,
) -> TrainerRun:
    """Train `model` on `nodes` workers of `client`'s cluster; what run_trainer returns for one machine.
    Raises TrainerFailed (with the failing node's lines and its `error:` lines) when a node fails for
    good, NcflowError when the cluster cannot hold the nodes."""
    started = time.perf_counter()
    placed = place_nodes(client.run(describe_worker), nodes, gpus, cpu_processes)
    head = placed[0]
    port = client.run(free_port, workers=[head.worker])[head.worker]
    endpoint = endpoint_address(head.address, port)
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    token = uuid.uuid4().hex
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / CHECK_FILE, "w") as handle:
        handle.write(token)
    trainer = trainer_args(model, data_dir, out_dir, config)
    on_line(
        f"{nodes} nodes, rendezvous {endpoint} (id {run_id}): "
        + "; ".join(f"node {n.rank} on {n.worker} ({n.host}), {n.processes} process(es)" for n in placed)
    )
    inbox: queue.Queue = queue.Queue()
    topic = f"ncflow-train-{run_id}-{token[:8]}"
    client.subscribe_topic(topic, lambda event: inbox.put(event[1]))
    futures = [
        client.submit(
            run_agent,
            agent_args(n, nodes, endpoint, run_id, join_timeout_s, trainer),
            n.env,
            n,
            topic,
            str(data_dir),
            str(out_dir),
            token,
            key=f"ncflow-agent-{token[:8]}-node-{n.rank}",
            workers=[n.worker],
            allow_other_workers=False,
            retries=MAX_RESTARTS,
            pure=False,
        )  # fmt: skip
        for n in placed
    ]
    follow = Follower(on_event, on_line)
    try:
        failure = follow.until_done(client, futures, placed, inbox)
    finally:
        client.cancel(futures)  # stops every agent still running (run_agent's `cancelled`)
        client.unsubscribe_topic(topic)
        (out_dir / CHECK_FILE).unlink(missing_ok=True)
    follow.run.wall_seconds = time.perf_counter() - started
    if failure is not None:
        raise follow.failed(failure, placed, endpoint, join_timeout_s)
    if follow.run.done is None:
        raise TrainerFailed(0, [*follow.tail, "(no node reported a 'done' event)"], [])
    return follow.run


class Follower:
    """The caller's side: forwarded messages in, events and lines out, until every agent has ended."""

    def __init__(self, on_event: Callable[[dict], None], on_line: Callable[[str], None]) -> None:
        self.on_event, self.on_line = on_event, on_line
        self.run = TrainerRun()
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.started: set[int] = set()
        self.ended: set[int] = set()

    def take(self, message: dict) -> None:
        kind, payload = message["kind"], message.get("payload")
        if kind == "started":
            self.started.add(message["node"])
        elif kind == "end":
            self.ended.add(message["node"])
        elif kind == "line":
            self.tail.append(payload)
            self.on_line(payload)
        elif kind == "event":
            self.run.events.append(payload)
            if payload.get("event") == "done":
                self.run.done = payload
            self.on_event(payload)

    def drain(self, inbox: queue.Queue, wait_s: float) -> None:
        try:
            self.take(inbox.get(timeout=wait_s))
            while True:
                self.take(inbox.get_nowait())
        except queue.Empty:
            pass

    def until_done(self, client, futures: list, placed: list[Node], inbox: queue.Queue) -> dict | None:
        """None when every agent ended well; else the first failing node's result. A node whose worker
        left the cluster (its machine lost) fails the attempt at once, to be retried elsewhere: its
        pinned task would otherwise wait for that worker for ever."""
        checked = time.monotonic()
        while True:
            self.drain(inbox, 0.2)
            for node, future in zip(placed, futures):
                if future.status == "error":
                    return failure(node, [repr(future.exception())])
                if future.status in ("cancelled", "lost"):
                    return failure(node, [f"its agent's Dask task was {future.status}"])
                if future.status == "finished" and future.result()["returncode"] != 0:
                    return future.result()
            if all(future.status == "finished" for future in futures):
                break
            if time.monotonic() - checked > WORKERS_CHECKED_EVERY_S:
                checked = time.monotonic()
                present = set(client.scheduler_info(n_workers=-1)["workers"])
                gone = [
                    n for n, f in zip(placed, futures) if n.worker not in present and f.status == "pending"
                ]
                if gone:
                    return failure(
                        gone[0], [f"node {gone[0].rank}'s worker {gone[0].worker} left the Dask cluster"]
                    )
        deadline = time.monotonic() + ENDS_WITHIN_S  # their last lines may still be on the way
        while len(self.ended) < len(futures) and time.monotonic() < deadline:
            self.drain(inbox, 0.2)
        return None

    def failed(self, failure: dict, placed: list[Node], endpoint: str, join_timeout_s: int) -> TrainerFailed:
        """The failing node's error, one line first: a rendezvous that timed out names who never came."""
        tail = [*self.tail, *failure["tail"]][-STDERR_TAIL:]
        errors = list(failure["errors"])
        if any("RendezvousTimeoutError" in line for line in tail):
            absent = [n for n in placed if n.rank not in self.started]
            who = (
                ", ".join(f"node {n.rank} (worker {n.worker})" for n in absent)
                + (" never started its agent" if len(absent) == 1 else " never started their agents")
                if absent
                else f"every node started, but they did not meet: check that each reaches {endpoint}"
            )
            errors.insert(
                0,
                f"error: the rendezvous at {endpoint} timed out after {join_timeout_s} s waiting for "
                f"{len(placed)} nodes: {who}",
            )
        return TrainerFailed(failure["returncode"], tail, errors)


def failure(node: Node, tail: list[str]) -> dict[str, Any]:
    """A node's failure that its agent could not report itself: retryable (no `error:` line)."""
    return {"node": node.rank, "returncode": 1, "tail": tail, "errors": []}
