"""The training task: torchrun as a subprocess, its output streamed into the run's logs, its epoch
events turned into artifacts while it runs.

Artifacts (keys version across runs, so the UI's Artifacts page shows their history):
- `<model>-<dataset>-progress`: a progress bar, updated at each epoch;
- `<model>-<dataset>-epochs`: the per-epoch table (loss, the model's metrics, throughput; for NCF the
  negatives drawn, for VAE-CF the KL weight),
  re-published after every epoch, so the latest version is the run so far.

Retries resume: the trainer checkpoints after every epoch (VAE-CF: every `checkpoint_every`) into `out_dir`, which the flow keeps fixed
for the flow run (runs/<flow run id>/), and a restarted trainer continues after the last
checkpointed epoch. A failure the trainer explains with `error: ...` (bad data, bad setting) is not retried.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from torch import device as torch_device

from ncflow.launch import TrainerFailed, run_trainer, torchrun_command
from ncflow.specs import ModelSpec, spec
from tasks._run import artifact, run_logger

TRAINER_EPOCH_LINE = re.compile(r"epoch\s+\d+\s+loss\s")  # `epoch   3  loss 0.4349  HR@10 ...` (stderr)
DATA_SIZES = (
    "users",
    "items",
    "train_positives",
    "train_users",
    "valid_users",
    "test_users",
    "steps_per_epoch",
)


def _worth_retrying(task, task_run, state) -> bool:
    try:
        state.result()
    except TrainerFailed as err:
        return err.retryable
    except Exception:  # noqa: BLE001 - anything else (e.g. a killed process) may well pass next time
        return True
    return True


class EpochReporter:
    """Turns the trainer's events into log lines and artifacts; what a row shows comes from the spec."""

    def __init__(self, key: str, epochs: int, model: ModelSpec) -> None:
        self.key, self.epochs, self.model = key, epochs, model
        self.log = run_logger()
        self.rows: list[dict[str, Any]] = []
        self.start: dict[str, Any] = {}
        self.progress_id = None

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
            self.log.info(
                "training %s %s parameters on %s x %s (%s); %s",
                self.model.name, f"{event.get('parameters', 0):,}", event.get("world_size"), event.get("device"),
                event.get("precision"), sizes,
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
        row = {
            "epoch": event["epoch"], "loss": round(event["loss"], 5),
            **{name.upper(): round(event[name], 5) for name in self.model.metrics},
            rate_label: round(event[rate_key]), "train s": round(event["train_seconds"], 3),
            "eval s": round(event["eval_seconds"], 3), **extra,
        }  # fmt: skip
        self.rows.append(row)
        scores = " ".join(f"{name.upper()} {event[name]:.4f}" for name in self.model.metrics)
        self.log.info(
            "epoch %d: loss %.4f %s, %s %s (train %.2f s + eval %.2f s)%s",
            event["epoch"], event["loss"], scores, f"{event[rate_key]:,.0f}", rate_label, event["train_seconds"],
            event["eval_seconds"], f"; {note}" if note else "",
        )  # fmt: skip
        if self.progress_id is not None:
            update_progress_artifact(self.progress_id, min(100.0, 100.0 * (event["epoch"] + 1) / self.epochs))
        artifact(create_table_artifact, self.rows, key=f"{self.key}-epochs", description="per-epoch metrics")

    def trainer_line(self, line: str) -> None:
        """A line of the trainer's stderr into the task's log, except its per-epoch progress line: the
        epoch is logged once, by `_epoch`, from the event (the same numbers plus the model's note)."""
        if not TRAINER_EPOCH_LINE.match(line):
            self.log.info("%s", line)


@task(
    name="train_model",
    task_run_name="train-{model}",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_worth_retrying,
    cache_policy=NO_CACHE,  # training is the work itself; resuming is the checkpoint's job
)
def train_model(
    model: str, data_dir: str, out_dir: str, config: dict[str, Any], processes: int, artifact_key: str
) -> dict[str, Any]:
    """Run `model`'s trainer (models.<package>.train) under torchrun with `processes` processes; return
    its `done` summary plus `history` (the epoch events), `wall_seconds` (the trainer process),
    `processes` and `device`."""
    log = run_logger()
    what = spec(model)
    command = torchrun_command(what.package, Path(data_dir), Path(out_dir), config, processes)
    log.info("launching: %s", " ".join(command))
    reporter = EpochReporter(artifact_key, int(config.get("epochs", 1)), what)
    run = run_trainer(command, on_event=reporter, on_line=reporter.trainer_line)
    history = [{k: v for k, v in e.items() if k not in ("event", "elapsed_s")} for e in run.epochs]
    resumed = next((e["epoch"] for e in run.events if e.get("event") == "resume"), 0)
    if resumed:  # the epochs before it were reported by an earlier try: they are in the checkpoint
        from models.common.checkpoint import load_checkpoint

        history = load_checkpoint(Path(out_dir), torch_device("cpu"))["history"][:resumed] + history
    return {
        **{k: v for k, v in run.done.items() if k != "event"},
        "history": history,
        "wall_seconds": run.wall_seconds,
        "processes": processes,
        "device": config.get("device"),
        "out_dir": out_dir,
    }
