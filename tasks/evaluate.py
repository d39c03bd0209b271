"""The evaluation task: score the saved bundle on the test set, independently of the trainer.

It loads `models.<package>.evaluate.evaluate_bundle` (ncflow.specs names the package and flattens the
result), so another model plugs in by providing one. The trainer's value to match is the spec's
`trainer_metric` (NCF: its last `hr@10`; VAE-CF: its `test_ndcg@100`, validation being another split). On
CPUs the result must equal the trainer's last reported value exactly (same function, same data);
on GPUs a different batch split across ranks can flip a tie, so a mismatch there is a warning.

The scores also hold the full-ranking metrics (`full_hr@10`, `full_ndcg@10`, `full_recall@20`: every
unseen item ranked, models/common/full_rank.py) and item popularity's under the same protocol
(`popularity_full_*`). With a validation split, NCF's also hold `valid_hr@10` (the champion rule's).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ncflow.specs import spec
from tasks._run import run_logger


class EvaluationMismatch(RuntimeError):
    pass


def score_bundle(model: str, bundle: str | Path, data_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """`model`'s evaluate_bundle on the test set, flat (metric -> value), with its SystemExit (a user
    error) made an exception."""
    what = spec(model)
    evaluate_bundle = importlib.import_module(f"models.{what.package}.evaluate").evaluate_bundle
    try:
        return what.scores(evaluate_bundle(Path(bundle), Path(data_dir), device=device))
    except SystemExit as err:
        raise RuntimeError(str(err.code)) from None


@task(name="evaluate_model", task_run_name="evaluate-{model}", cache_policy=NO_CACHE)
def evaluate_model(
    model: str,
    bundle: str,
    data_dir: str,
    device: str = "cpu",
    expected: dict[str, Any] | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Metrics of `bundle` on `data_dir`'s test set; `metric` (default: the model's champion metric) is
    checked against the trainer's value in `expected` (its `done` summary)."""
    log = run_logger()
    what = spec(model)
    metric = metric or what.metric
    scores = score_bundle(model, bundle, data_dir, device)
    log.info("evaluated %s: %s", bundle, ", ".join(f"{k} {v}" for k, v in scores.items()))
    key = what.trainer_key(metric)
    if expected is not None and key in expected:
        trainer, ours = float(expected[key]), float(scores[metric])
        if ours != trainer:
            message = f"independent {metric} {ours!r} differs from the trainer's last {trainer!r}"
            if device == "cpu":
                raise EvaluationMismatch(message)
            log.warning("%s (GPU: ties may break differently across ranks)", message)
    return scores
