"""Where the nodes of a multi-node training run go, and the torchrun line each one runs.

Dask places, torchrun joins: one torchrun agent per node, each on its own Dask worker, started by
ncflow/node_agents.py. The agents meet at torchrun's c10d rendezvous, hosted by node 0's agent on
node 0's worker address, with the flow run's id as the rendezvous id; torchrun then numbers the
processes (global ranks) across nodes and restarts the whole group when one fails (`--max-restarts`).

Workers on distinct hosts are taken first. When there are fewer hosts than nodes (the 127.0.0.1
stand-in of the tests, or `--nodes 2 --gpus 1` on one 2-GPU machine), the nodes on one host share
it: each gets its own GPUs (CUDA_VISIBLE_DEVICES) and its share of the cores
(models/common/distributed.cpu_threads).

This module is plain functions over worker descriptions, so the rules are tested without a cluster.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ncflow.errors import NcflowError

MAX_RESTARTS = 3  # torchrun restarts of the whole group after a lost node or process, then the task's retries
CHECK_FILE = ".nodes-see-this"  # written by the launcher into the run folder; every node must see it
# torch 2.13's agents keep the workers' store address from their first rendezvous when they share the
# rendezvous store with the workers (the default): after a lost node, the survivor never publishes it
# for the next round and a replacement node waits for it until the store times out. Opting out makes
# every round publish it afresh (tests/test_nodes.py kills a node's agent mid-run).
AGENT_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@dataclass(frozen=True)
class Node:
    rank: int  # the node's place in the placement: node 0 hosts the rendezvous (not its global ranks)
    worker: str  # the Dask worker address that runs its agent
    host: str  # that worker's host name
    address: str  # the worker's IP or name in its Dask address: reachable by every other node
    processes: int  # torchrun's --nproc-per-node
    env: dict[str, str] = field(default_factory=dict)  # CUDA_VISIBLE_DEVICES, NCFLOW_HOST_PROCESSES


def describe_worker() -> dict[str, Any]:
    """Run on a Dask worker (Client.run): its host, the GPUs it can use, its cores. No torch import:
    a worker that only hosts agents need not load it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g for g in visible.split(",") if g.strip() and not g.startswith("-")]
    else:
        found = Path("/proc/driver/nvidia/gpus")
        gpus = [str(i) for i in range(len(list(found.iterdir())))] if found.is_dir() else []
    return {"host": socket.gethostname(), "gpus": sorted(gpus), "cores": len(os.sched_getaffinity(0))}


def address_host(worker: str) -> str:
    """`tcp://10.0.0.5:40123` -> `10.0.0.5`; `tls://[::1]:8786` -> `::1`."""
    return urlsplit(worker).hostname or worker


def place_nodes(
    workers: Mapping[str, Mapping[str, Any]], nodes: int, gpus: int, cpu_processes: int
) -> list[Node]:
    """`nodes` workers of `workers` ({address: describe_worker()}), distinct hosts first; each node
    runs `gpus` processes on GPUs of its own, or `cpu_processes` gloo processes when gpus is 0."""
    from models.common.distributed import HOST_PROCESSES  # here: workers import this module, not torch

    if nodes < 1:
        raise NcflowError(f"nodes must be at least 1, got {nodes}")
    if len(workers) < nodes:
        raise NcflowError(
            f"nodes={nodes} asked for, but the Dask cluster has {len(workers)} worker(s): start one "
            "`dask worker` per machine, or ask for fewer nodes"
        )
    by_host: dict[str, list[str]] = {}
    for address in sorted(workers):
        by_host.setdefault(workers[address]["host"], []).append(address)
    hosts = sorted(by_host)
    # Round-robin over hosts: the first worker of every host, then the second of every host, ...
    order = [
        by_host[h][i] for i in range(max(map(len, by_host.values()))) for h in hosts if i < len(by_host[h])
    ]
    chosen = order[:nodes]
    per_host = {h: [a for a in chosen if workers[a]["host"] == h] for h in hosts}
    placed = []
    for rank, address in enumerate(chosen):
        info = workers[address]
        sharing = per_host[info["host"]]
        env = {HOST_PROCESSES: str(len(sharing) * (gpus or cpu_processes)), **AGENT_ENV}
        if gpus:
            have = sorted(info["gpus"])  # one order on every worker of the host (dask-cuda rotates it)
            if len(have) < gpus * len(sharing):
                raise NcflowError(
                    f"host {info['host']} has {len(have)} GPU(s), too few for {len(sharing)} node(s) "
                    f"of gpus={gpus}: ask for fewer gpus or nodes"
                )
            mine = sharing.index(address)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(have[mine * gpus : (mine + 1) * gpus])
        processes = gpus or cpu_processes
        placed.append(Node(rank, address, info["host"], address_host(address), processes, env))
    return placed


def endpoint_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def agent_args(
    node: Node, nodes: int, endpoint: str, run_id: str, join_timeout_s: int, trainer: list[str]
) -> list[str]:
    """torchrun's arguments for one node (the node's own Python goes in front of them).

    `--local-addr`: the address the other nodes reach this one at, the worker's Dask address, rather
    than torchrun's guess (the host's fully qualified name, which other hosts often cannot resolve).
    `is_host`: said, not guessed, so that two nodes on one host do not both try to host the store.
    `keep_alive_*`: a lost node's place in the rendezvous is given up after 3 missed heartbeats 2 s
    apart (torch's default, 3 x 5 s, kept its replacement waiting 15 s).
    """
    return [
        "-m", "torch.distributed.run",
        f"--nnodes={nodes}", f"--nproc-per-node={node.processes}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run_id}",
        f"--rdzv-conf=join_timeout={join_timeout_s},is_host={str(node.rank == 0).lower()},"
        "keep_alive_interval=2,keep_alive_max_attempt=3",
        f"--max-restarts={MAX_RESTARTS}", f"--local-addr={node.address}",
        *trainer,
    ]  # fmt: skip


def free_port() -> int:
    """A free TCP port on this host (run on node 0's worker, for the rendezvous)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def check_node_sees(data_dir: Path, out_dir: Path, token: str, node: Node) -> str | None:
    """None, or the one line that says why this node cannot train: it must see the processed data and
    the run folder that the launcher wrote `token` into (runs_dir on a disk every node reaches), and be
    able to write there. Checked before the agent starts, not at the first checkpoint."""
    where = f"node {node.rank} (host {node.host}, worker {node.worker})"
    if not (data_dir / "manifest.json").is_file():
        return f"error: {where} cannot see the processed data {data_dir}: data_dir must be on a disk every node reaches"
    marker = out_dir / CHECK_FILE
    if not marker.is_file() or marker.read_text() != token:
        return (
            f"error: {where} cannot see the run folder {out_dir}: runs_dir must be a shared disk that every "
            "node reaches at the same path"
        )
    probe = out_dir / f".write-check-{node.rank}-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        return f"error: {where} cannot write to the run folder {out_dir} ({err.strerror})"
    return None
