"""The evaluation task: score the saved bundle on the test set, independently of the trainer.

It loads `models.<model>.evaluate.evaluate_bundle`, so another model plugs in by providing one. On
CPUs the result must equal the trainer's last reported value exactly (same function, same data);
on GPUs a different batch split across ranks can flip a tie, so a mismatch there is a warning.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._run import run_logger


class EvaluationMismatch(RuntimeError):
    pass


def score_bundle(model: str, bundle: str | Path, data_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """models.<model>.evaluate.evaluate_bundle, with its SystemExit (a user error) made an exception."""
    evaluate_bundle = importlib.import_module(f"models.{model}.evaluate").evaluate_bundle
    try:
        return evaluate_bundle(Path(bundle), Path(data_dir), device)
    except SystemExit as err:
        raise RuntimeError(str(err.code)) from None


@task(name="evaluate_model", task_run_name="evaluate-{model}", cache_policy=NO_CACHE)
def evaluate_model(
    model: str,
    bundle: str,
    data_dir: str,
    device: str = "cpu",
    expected: dict[str, Any] | None = None,
    metric: str = "hr@10",
) -> dict[str, Any]:
    """Metrics of `bundle` on `data_dir`'s test set; checked against `expected[metric]` (the trainer's)."""
    log = run_logger()
    scores = score_bundle(model, bundle, data_dir, device)
    log.info("evaluated %s: %s", bundle, ", ".join(f"{k} {v}" for k, v in scores.items()))
    if expected is not None and metric in expected:
        trainer, ours = float(expected[metric]), float(scores[metric])
        if ours != trainer:
            message = f"independent {metric} {ours!r} differs from the trainer's last {trainer!r}"
            if device == "cpu":
                raise EvaluationMismatch(message)
            log.warning("%s (GPU: ties may break differently across ranks)", message)
    return scores
