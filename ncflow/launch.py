"""Run a model's trainer under torchrun and follow it: JSON events from stdout, progress lines from stderr.

Plain Python, no Prefect: `tasks/train.py` wraps it, tests call it directly. Any model whose trainer
is `python -m models.<model>.train --data DIR --out DIR [flags]` and speaks `models.common.events`
plugs in (NCF now, VAE-CF later).

The trainer never outlives the run that started it:
- Cancelled: the child is started in our own process group (no setsid). Prefect's process worker runs
  each flow run in a session of its own and, on cancellation, sends SIGTERM then SIGKILL to that whole
  group, so torchrun, its workers and a direct trainer all get it (tests/test_flow_e2e.py).
- Killed (the flow process SIGKILLed with its worker): the kernel kills the child too (PR_SET_PDEATHSIG,
  set here for the child and by each trainer for itself, so torchrun's workers follow their agent).
- Left early for any other reason (an exception, an interrupt): the `finally` terminates it.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.common.lifetime import DIE_WITH_PARENT, die_with_parent

STDERR_TAIL = 30  # lines of the trainer's stderr quoted when it fails
ERROR_PREFIX = "error:"  # how the trainers report a problem with their input (bad data, bad setting)


class TrainerFailed(RuntimeError):
    """The trainer failed. `errors`: its own `error: ...` lines, which torchrun's report would bury;
    when there are any, the input is at fault and a retry cannot help."""

    def __init__(self, returncode: int, tail: list[str], errors: list[str]) -> None:
        self.returncode, self.tail, self.errors = returncode, tail, errors
        lines = "\n".join(tail) or "(no output on stderr)"
        headline = "; ".join(errors) or "see its last lines of stderr below"
        super().__init__(f"trainer exited with status {returncode}: {headline}\n{lines}")

    @property
    def retryable(self) -> bool:
        return not self.errors


def config_flags(config: Mapping[str, Any]) -> list[str]:
    """`--name value` flags for a trainer's dataclass config (see models/common/config_cli.py)."""
    flags: list[str] = []
    for name, value in config.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | tuple):
            flags += [flag, ",".join(str(v) for v in value)]
        else:
            flags += [flag, str(value)]
    return flags


def trainer_args(model: str, data_dir: Path, out_dir: Path, config: Mapping[str, Any]) -> list[str]:
    """`-m models.<model>.train --data ... --out ... [flags]`: what python or torchrun runs."""
    return [
        "-m",
        f"models.{model}.train",
        "--data",
        str(data_dir),
        "--out",
        str(out_dir),
        *config_flags(config),
    ]


def torchrun_command(
    model: str, data_dir: Path, out_dir: Path, config: Mapping[str, Any], nproc: int
) -> list[str]:
    """torchrun for several processes; one process runs the trainer directly. torchrun's agent is a
    second Python that imports torch and outlives its worker: measured 2026-11-22 on an H200, it added
    about 5 s to a 13 s run (bench/RESULTS.md). Several machines: ncflow/nodes.py."""
    trainer = trainer_args(model, data_dir, out_dir, config)
    if nproc == 1:
        return [sys.executable, *trainer]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *trainer,
    ]


@dataclass
class TrainerRun:
    """What the trainer said: its events in order, the `done` event, and the child's wall time."""

    events: list[dict] = field(default_factory=list)
    done: dict | None = None
    wall_seconds: float = 0.0

    @property
    def epochs(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "epoch"]


def trainer_env() -> dict[str, str]:
    """The environment of a trainer: the caller's, plus caches that make a repeat run on the same
    worker start warm: compiled kernels (Triton, CuPy) and Python bytecode. Where site-packages is
    read-only or bytecode is switched off (PYTHONDONTWRITEBYTECODE, as on some GPU images), every
    import otherwise recompiles torch's sources: 4-5 s per run, measured on the H200 image. Bytecode
    goes under ncflow's cache, never into a source tree. Cache locations already set win."""
    from models.common.kernel_cache import kernel_cache_dir

    root = kernel_cache_dir()
    wanted = {
        "TRITON_CACHE_DIR": str(root / "triton"),
        "CUPY_CACHE_DIR": str(root / "cupy"),
        "PYTHONPYCACHEPREFIX": str(root.parent / "pycache"),
    }
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**wanted, **env}


def run_trainer(
    command: list[str],
    on_event: Callable[[dict], None] = lambda event: None,
    on_line: Callable[[str], None] = lambda line: None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    require_done: bool = True,
    stop_when: Callable[[], bool] | None = None,
) -> TrainerRun:
    """Run `command`, calling `on_event` per JSON line of stdout and `on_line` per other line, as they come.

    Raises TrainerFailed (with the last stderr lines) if it exits non-zero or, with `require_done`,
    never reports `done` (one node of several may hold no rank that speaks). `stop_when` is asked
    every half second; when it answers True the child is stopped (ncflow/node_agents.py: the run
    that placed this node was cancelled).
    """
    run = TrainerRun()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    errors: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        env={**trainer_env(), DIE_WITH_PARENT: "1", **(env or {})}, cwd=cwd,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),
    )  # fmt: skip

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            if line:
                tail.append(line)
                if line.startswith(ERROR_PREFIX) and len(errors) < 5:
                    errors.append(line)
                on_line(line)

    reader = threading.Thread(target=pump_stderr, name="trainer-stderr", daemon=True)
    reader.start()
    if stop_when is not None:
        threading.Thread(target=_stop_when, args=(proc, stop_when), name="trainer-stop", daemon=True).start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                on_line(line)
                continue
            if not isinstance(event, dict):
                on_line(line)
                continue
            run.events.append(event)
            if event.get("event") == "done":
                run.done = event
            on_event(event)
        returncode = proc.wait()
        reader.join(timeout=10)
    finally:
        stop(proc)
        run.wall_seconds = time.perf_counter() - start
    if returncode != 0:
        raise TrainerFailed(returncode, list(tail), errors)
    if run.done is None and require_done:
        raise TrainerFailed(returncode, [*tail, "(the trainer ended without a 'done' event)"], errors)
    return run


def _stop_when(proc: subprocess.Popen, asked: Callable[[], bool], every_s: float = 0.5) -> None:
    while proc.poll() is None:
        if asked():
            stop(proc)
            return
        time.sleep(every_s)


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM (torchrun passes it to its workers), then SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
