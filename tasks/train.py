"""The training task: torchrun as a subprocess, its output streamed into the run's logs, its epoch
events turned into artifacts while it runs.

Artifacts (keys version across runs, so the UI's Artifacts page shows their history):
- `<model>-<dataset>-progress`: a progress bar, updated at each epoch;
- `<model>-<dataset>-epochs`: the per-epoch table (loss, the model's metrics, throughput; for NCF the
  negatives drawn, for VAE-CF the KL weight);
- `<model>-<dataset>-learning-curve`: the same epochs as a picture (ncflow.learning_curve), with the
  latest and the best epoch in words.
The table and the curve are rewritten in place after every epoch (tasks.live_artifact): one artifact
each per run, always the run so far.

Retries resume: the trainer checkpoints after every epoch (VAE-CF: every `checkpoint_every`) into `out_dir`, which the flow keeps fixed
for the flow run (runs/<flow run id>/), and a restarted trainer continues after the last
checkpointed epoch. A failure the trainer explains with `error: ...` (bad data, bad setting) is not retried.

Several machines (`nodes` > 1): the same trainer, one torchrun agent per Dask worker
(ncflow/node_agents.py); rank 0's events and every node's lines arrive here as from one process.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from torch import device as torch_device

from ncflow.launch import TrainerRun, run_trainer, torchrun_command
from ncflow.learning_curve import learning_curve_markdown
from ncflow.specs import ModelSpec, spec
from tasks._run import artifact, run_logger, worth_retrying
from tasks.live_artifact import LiveArtifact

# The trainer's `epoch   3  loss 0.4349  HR@10 ...` on stderr; `node 0: ` in front when forwarded from a node.
TRAINER_EPOCH_LINE = re.compile(r"(node \d+: )?epoch\s+\d+\s+loss\s")
# A trainer's `warning: ...` (e.g. too few steps per epoch, models/common/defaults.py): logged as a warning.
TRAINER_WARNING_LINE = re.compile(r"(node \d+: )?warning:")
DATA_SIZES = (
    "users",
    "items",
    "train_positives",
    "train_users",
    "valid_users",
    "test_users",
    "steps_per_epoch",
)


class EpochReporter:
    """Turns the trainer's events into log lines and artifacts; what a row shows comes from the spec."""

    def __init__(self, key: str, epochs: int, model: ModelSpec) -> None:
        self.key, self.epochs, self.model = key, epochs, model
        self.log = run_logger()
        self.rows: list[dict[str, Any]] = []
        self.start: dict[str, Any] = {}
        self.progress_id = None
        self.table = LiveArtifact("table", f"{key}-epochs", "per-epoch metrics")
        self.curve = LiveArtifact("markdown", f"{key}-learning-curve", "loss and metrics per epoch")

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "resume":
            self.log.info("resuming from the checkpoint: continuing at epoch %s", event.get("epoch"))
        elif kind == "start":
            self.start = event
            sizes = ", ".join(
                f"{event[name]:,} {name.replace('_', ' ')}"
                for name in DATA_SIZES
                if isinstance(event.get(name), int)
            )
            batch = event.get("config", {}).get("batch_size")
            self.log.info(
                "training %s %s parameters on %s x %s (%s); %s%s",
                self.model.name, f"{event.get('parameters', 0):,}", event.get("world_size"), event.get("device"),
                event.get("precision"), sizes, f", batch size {batch:,}" if isinstance(batch, int) else "",
            )  # fmt: skip
            self.progress_id = artifact(
                create_progress_artifact, progress=0.0, key=f"{self.key}-progress",
                description=f"training epochs (of at most {self.epochs})",
            )  # fmt: skip
        elif kind == "epoch":
            self._epoch(event)
        elif kind == "done":
            if self.progress_id is not None:
                update_progress_artifact(self.progress_id, 100.0)

    def _epoch(self, event: dict[str, Any]) -> None:
        rate_key, rate_label = self.model.throughput
        extra, note = self.model.epoch_note(event, self.start) if self.model.epoch_note else ({}, "")
        shown = [name for name in self.model.metrics if name in event]  # test, per epoch
        shown += [f"valid_{name}" for name in self.model.metrics if f"valid_{name}" in event]  # or validation
        row = {
            "epoch": event["epoch"], "loss": round(event["loss"], 5),
            **{name.upper(): round(event[name], 5) for name in shown},
            rate_label: round(event[rate_key]), "train s": round(event["train_seconds"], 3),
            "eval s": round(event["eval_seconds"], 3), **extra,
        }  # fmt: skip
        self.rows.append(row)
        scores = " ".join(f"{name.upper()} {event[name]:.4f}" for name in shown)
        self.log.info(
            "epoch %d: loss %.4f %s, %s %s (train %.2f s + eval %.2f s)%s",
            event["epoch"], event["loss"], scores, f"{event[rate_key]:,.0f}", rate_label, event["train_seconds"],
            event["eval_seconds"], f"; {note}" if note else "",
        )  # fmt: skip
        if self.progress_id is not None:
            update_progress_artifact(self.progress_id, min(100.0, 100.0 * (event["epoch"] + 1) / self.epochs))
        self.table.publish(self.rows)
        curve = self._curve(event["epoch"])
        self.curve.publish(curve, description=curve.split("\n")[0].replace("**", ""))  # the headline

    def _curve(self, epoch: int) -> str:
        """The curve under one line of words: where training is and its best epoch so far. With a
        validation split the epochs report valid_* metrics: those are drawn."""
        measured = any(self.model.metrics[0].upper() in r for r in self.rows)
        names = tuple(m if measured else f"valid_{m}" for m in self.model.metrics)
        metric = names[0]
        scored = [r for r in self.rows if _finite(r.get(metric.upper()))]
        best = max(scored, key=lambda r: r[metric.upper()], default=None)
        headline = f"**{epoch + 1} of at most {self.epochs} epochs done**" + (
            f"; best {metric.upper()} {best[metric.upper()]:.4f} at epoch {best['epoch']}" if best else ""
        )
        history = [
            {"epoch": r["epoch"], "loss": r["loss"], **{m: r.get(m.upper()) for m in names}}
            for r in self.rows
        ]
        return headline + "\n\n" + learning_curve_markdown(history, names) + "\n"

    def trainer_line(self, line: str) -> None:
        """A line of the trainer's stderr into the task's log, except its per-epoch progress line: the
        epoch is logged once, by `_epoch`, from the event (the same numbers plus the model's note)."""
        if TRAINER_WARNING_LINE.match(line):
            self.log.warning("%s", line)
        elif not TRAINER_EPOCH_LINE.match(line):
            self.log.info("%s", line)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def where_running() -> str:
    """The process this task runs in: a Dask worker's address (a sweep's trials) or `local`, and its pid."""
    try:
        from distributed import get_worker

        place = get_worker().address
    except (ImportError, ValueError):  # not inside a Dask worker
        place = "local"
    return f"{place} pid {os.getpid()}"


@task(
    name="train_model",
    task_run_name="train-{model}",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=worth_retrying,
    cache_policy=NO_CACHE,  # training is the work itself; resuming is the checkpoint's job
)
def train_model(
    model: str,
    data_dir: str,
    out_dir: str,
    config: dict[str, Any],
    processes: int,
    artifact_key: str,
    nodes: int = 1,
    scheduler: str | None = None,
    rendezvous_timeout: int = 600,
) -> dict[str, Any]:
    """Run `model`'s trainer (models.<package>.train) under torchrun with `processes` processes (per
    node); return its `done` summary plus `history` (the epoch events), `wall_seconds` (the trainer
    process), `processes`, `nodes`, `device` and `worker` (which Dask worker ran a sweep's trial).

    With `nodes` above 1 the nodes are workers of the Dask cluster at `scheduler` (none: a local
    cluster of `nodes` processes), one torchrun agent each (ncflow/node_agents.py); the rendezvous id
    is the run folder's name, the flow run's id."""
    log = run_logger()
    what = spec(model)
    reporter = EpochReporter(artifact_key, int(config.get("epochs", 1)), what)
    if nodes > 1:
        run = _train_on_nodes(what.package, data_dir, out_dir, config, processes, reporter, nodes, scheduler,
                              rendezvous_timeout)  # fmt: skip
    else:
        command = torchrun_command(what.package, Path(data_dir), Path(out_dir), config, processes)
        log.info("launching: %s", " ".join(command))
        run = run_trainer(command, on_event=reporter, on_line=reporter.trainer_line)
    history = [{k: v for k, v in e.items() if k not in ("event", "elapsed_s")} for e in run.epochs]
    resumed = next((e["epoch"] for e in run.events if e.get("event") == "resume"), 0)
    if resumed:  # the epochs before it were reported by an earlier try: they are in the checkpoint
        from models.common.checkpoint import load_checkpoint

        history = load_checkpoint(Path(out_dir), torch_device("cpu"))["history"][:resumed] + history
    return {
        **{k: v for k, v in run.done.items() if k != "event"},
        "history": history,
        "config": reporter.start.get("config", {}),  # what the trainer ran with, data-sized values included
        "wall_seconds": run.wall_seconds,
        "processes": processes * nodes,
        "nodes": nodes,
        "device": config.get("device"),
        "out_dir": out_dir,
        "resumed_at_epoch": resumed or None,  # the epoch a retry continued at; None: from the start
        "worker": where_running(),
    }


def _train_on_nodes(
    package: str, data_dir: str, out_dir: str, config: dict[str, Any], processes: int,
    reporter: EpochReporter, nodes: int, scheduler: str | None, rendezvous_timeout: int,
) -> TrainerRun:  # fmt: skip
    from ncflow.batch.cluster import dask_client
    from ncflow.node_agents import train_on_nodes

    gpus = processes if config.get("device") == "cuda" else 0
    with dask_client(workers=nodes, scheduler=scheduler, device="cpu") as client:
        return train_on_nodes(
            client, package, Path(data_dir), Path(out_dir), config, nodes=nodes, gpus=gpus,
            cpu_processes=processes, run_id=Path(out_dir).name, join_timeout_s=rendezvous_timeout,
            on_event=reporter, on_line=reporter.trainer_line,
        )  # fmt: skip
