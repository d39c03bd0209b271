"""The registration task: the bundle becomes the next immutable version in the registry; the
`champion` alias moves to it only if it scores better on the same test set; the dataset's `best`
alias (ncflow/best.py, across model families) moves to it only if it beats the best of any family.

Artifacts: `<model>-<dataset>-model-card` (markdown), `<model>-<dataset>-metrics` (markdown: the
decision and why, then this model against the previous champion), `<model>-<dataset>-bundle` (a link
to the registered folder, its path in the text: a browser will not open file:// links from the UI),
`best-<dataset>-comparison` (markdown: the `best` decision and every family's champion on this data).

Then the registry is pruned to the champion, the best and the newest `keep_versions`, and `runs_dir` to
the folders of runs still going or still referred to (ncflow/retention.py); one log line says what went.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ncflow import best, registry, retention
from ncflow.best_compare import compare_across
from ncflow.data.preprocess import read_manifest
from ncflow.model_card import baseline_verdicts, best_section, comparison, decision, model_card
from ncflow.specs import spec
from tasks._run import artifact, artifact_key, run_logger
from tasks.evaluate import score_bundle


def fair_comparison(model: str, bundle: str, data_dir: str, device: str):
    """The model's `compare_bundles` (models/<package>/compare.py), bound to this run: the champion rule
    on held-out data neither model trained on. None for a model without one (it is re-scored alone)."""
    package = f"models.{spec(model).package}.compare"
    if importlib.util.find_spec(package) is None:
        return None
    compare_bundles = importlib.import_module(package).compare_bundles
    return lambda champion: compare_bundles(Path(bundle), champion, Path(data_dir), device)


@task(name="register_model", task_run_name="register-{model}-{dataset}", cache_policy=NO_CACHE)
def register_model(
    model: str,
    dataset: str,
    bundle: str,
    data_dir: str,
    metrics: dict[str, Any],
    training: dict[str, Any],
    params: dict[str, Any],
    registry_dir: str,
    metric: str | None = None,
    device: str = "cpu",
    fingerprint: dict[str, str] | None = None,
    keep_versions: int = 5,
    runs_dir: str | None = None,
) -> dict[str, Any]:
    """`register` (below), then prune the registry to the champion, the best and the newest
    `keep_versions`, and `runs_dir` (None: left alone) to the folders of runs going on or referred to."""
    with contextlib.ExitStack() as hold:  # the new version is in use until reported: no pruner takes it
        result = register(
            model, dataset, bundle, data_dir, metrics, training, params, registry_dir, metric, device,
            fingerprint, hold=hold,
        )  # fmt: skip
    pruned = retention.prune(Path(registry_dir), model, dataset, keep_versions, runs_dir and Path(runs_dir))
    run_logger().info("%s %s: %s", model, dataset, pruned.line())
    return {**result, "pruned": pruned.versions, "pruned_runs": pruned.runs}


def register(
    model: str,
    dataset: str,
    bundle: str,
    data_dir: str,
    metrics: dict[str, Any],
    training: dict[str, Any],
    params: dict[str, Any],
    registry_dir: str,
    metric: str | None = None,
    device: str = "cpu",
    fingerprint: dict[str, str] | None = None,
    hold: contextlib.ExitStack | None = None,
) -> dict[str, Any]:
    """Register `bundle` (scored `metrics` on `data_dir`'s test set); return version, path, promotion.

    The champion rule compares `metric` (default: the model's, ncflow.specs: NCF hr@10, VAE-CF ndcg@100)
    on the same test set; a champion measured on other data is compared on this run's held-out data that
    neither trained on (`fair_comparison`).
    """
    log = run_logger()
    what = spec(model)
    metric = metric or what.metric
    data = read_manifest(Path(data_dir))
    test_set = Path(data_dir).name  # dataset-protocol-hash(source md5, split config, code version)
    extra = {
        "params": params, "training": {k: v for k, v in training.items() if k != "history"},
        "fingerprint": fingerprint,  # data, settings, code: a later run of the same stops (flows/training.py)
    }  # fmt: skip

    def card(reg: registry.Registration) -> str:
        return model_card(
            reg, data=data, params=params, history=training.get("history", []), training=training,
            metrics=what.metrics, throughput=what.throughput, full_metrics=what.full_metrics,
        )  # fmt: skip

    reg = registry.register(
        Path(registry_dir), model, dataset, Path(bundle), metrics=metrics, test_set=test_set, metric=metric,
        extra=extra, card=card, rescore=lambda path: score_bundle(model, path, data_dir, device)[metric],
        compare=fair_comparison(model, bundle, data_dir, device), hold=hold,
    )  # fmt: skip
    log.info("registered %s %s v%d at %s: %s", model, dataset, reg.entry.version, reg.entry.path, reg.reason)

    key = artifact_key(model, dataset)
    verdicts = [line + "\n" for line in baseline_verdicts(metrics, (*what.metrics, *what.full_metrics))]
    artifact(
        create_markdown_artifact, "\n".join([decision(reg), "", *verdicts, *comparison(reg, what.metrics), ""]),
        key=f"{key}-metrics", description=f"v{reg.entry.version} against the previous champion: {reg.reason}",
    )  # fmt: skip
    artifact(
        create_link_artifact, reg.entry.path.resolve().as_uri(), link_text=f"{model} {dataset} v{reg.entry.version}: {reg.entry.path.resolve()}",
        key=f"{key}-bundle", description="the registered bundle (immutable)",
    )  # fmt: skip
    champion = registry.champion(Path(registry_dir), model, dataset)
    across = best.consider(
        Path(registry_dir), dataset, model, reg.entry, data.get("protocol", ""),
        compare=lambda family, path: compare_across(
            (model, reg.entry.path), (family, path), data_dir, device,
            incumbent_data=Path(data_dir).parent / registry.read_entry(path).test_set,  # if still there
        ),
    )  # fmt: skip
    log.info("best %s: %s (%s)", dataset, "moved" if across.moved else "stays", across.reason)
    # The card in the UI ends with the cross-family decision, made after the immutable MODEL_CARD.md.
    card_text = (reg.entry.path / registry.CARD).read_text().rstrip() + "\n\n" + best_section(across)
    artifact(
        create_markdown_artifact, card_text, key=f"{key}-model-card",
        description=f"{model} {dataset} v{reg.entry.version}: {reg.reason}",
    )  # fmt: skip
    artifact(
        create_markdown_artifact, across.comparison, key=artifact_key("best", dataset, "comparison"),
        description=f"the best model for {dataset} across families: {across.reason}",
    )  # fmt: skip
    return {
        "version": reg.entry.version,
        "path": str(reg.entry.path),
        "promoted": reg.promoted,
        "reason": reg.reason,
        "champion": str(champion.path) if champion else None,
        "best": across.best,
        "best_moved": across.moved,
        "best_reason": across.reason,
    }
