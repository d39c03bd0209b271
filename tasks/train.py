"""The training task: torchrun as a subprocess, its output streamed into the run's logs, its epoch
events turned into artifacts while it runs.

Artifacts (keys version across runs, so the UI's Artifacts page shows their history):
- `<model>-<dataset>-progress`: a progress bar, updated at each epoch;
- `<model>-<dataset>-epochs`: the per-epoch table (loss, HR@10, NDCG@10, samples/s, negatives drawn),
  re-published after every epoch, so the latest version is the run so far.

Retries resume: the trainer checkpoints after every epoch into `out_dir`, which the flow keeps fixed
for the flow run (runs/<flow run id>/), and a restarted trainer continues after the last complete
epoch. A failure the trainer explains with `error: ...` (bad data, bad setting) is not retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from torch import device as torch_device

from ncflow.launch import TrainerFailed, run_trainer, torchrun_command
from tasks._run import artifact, run_logger


def _worth_retrying(task, task_run, state) -> bool:
    try:
        state.result()
    except TrainerFailed as err:
        return err.retryable
    except Exception:  # noqa: BLE001 - anything else (e.g. a killed process) may well pass next time
        return True
    return True


class EpochReporter:
    """Turns the trainer's events into log lines and artifacts."""

    def __init__(self, key: str, epochs: int) -> None:
        self.key, self.epochs = key, epochs
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
            self.log.info(
                "training %s parameters on %s x %s (%s); %s users, %s items, %s positives, %s steps/epoch",
                f"{event.get('parameters', 0):,}", event.get("world_size"), event.get("device"),
                event.get("precision"), event.get("users"), event.get("items"), event.get("train_positives"),
                event.get("steps_per_epoch"),
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
        cfg = self.start.get("config", {})
        k, positives = cfg.get("negatives", 0), self.start.get("train_positives", 0)
        backend = "CuPy" if str(self.start.get("device", "")).startswith("cuda") else "NumPy"
        row = {
            "epoch": event["epoch"], "loss": round(event["loss"], 5), "HR@10": round(event["hr@10"], 5),
            "NDCG@10": round(event["ndcg@10"], 5), "samples/s": round(event["train_samples_per_s"]),
            "train s": round(event["train_seconds"], 3), "eval s": round(event["eval_seconds"], 3),
            "negatives drawn": k * positives,
        }  # fmt: skip
        self.rows.append(row)
        # The per-epoch negative augmentation: fresh negatives for every positive, drawn on the device.
        self.log.info(
            "epoch %d: %s fresh negatives (%d per positive) drawn with %s on %s; loss %.4f HR@10 %.4f "
            "NDCG@10 %.4f, %s samples/s",
            event["epoch"], f"{k * positives:,}", k, backend, self.start.get("device"), event["loss"],
            event["hr@10"], event["ndcg@10"], f"{event['train_samples_per_s']:,.0f}",
        )  # fmt: skip
        if self.progress_id is not None:
            update_progress_artifact(self.progress_id, min(100.0, 100.0 * (event["epoch"] + 1) / self.epochs))
        artifact(create_table_artifact, self.rows, key=f"{self.key}-epochs", description="per-epoch metrics")


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
    """Run `models.<model>.train` under torchrun with `processes` processes; return its `done` summary
    plus `history` (the epoch events), `wall_seconds` (the trainer process), `processes` and `device`."""
    log = run_logger()
    command = torchrun_command(model, Path(data_dir), Path(out_dir), config, processes)
    log.info("launching: %s", " ".join(command))
    reporter = EpochReporter(artifact_key, int(config.get("epochs", 1)))
    run = run_trainer(command, on_event=reporter, on_line=log.info)
    history = [{k: v for k, v in e.items() if k not in ("event", "elapsed_s")} for e in run.epochs]
    if any(e.get("event") == "resume" for e in run.events):  # earlier epochs were reported by an earlier try
        from models.common.checkpoint import load_checkpoint

        history = load_checkpoint(Path(out_dir), torch_device("cpu"))["history"]
    return {
        **{k: v for k, v in run.done.items() if k != "event"},
        "history": history,
        "wall_seconds": run.wall_seconds,
        "processes": processes,
        "device": config.get("device"),
        "out_dir": out_dir,
    }
