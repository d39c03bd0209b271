"""The `sweep` flow: trials of one model's trainer on Dask workers, ranked, the best one registered.

    ncflow sweep ncf --dataset synth-tiny --trials 4              # CPU: a LocalCluster of processes
    ncflow sweep ncf --dataset ml-20m --trials 16 --gpus 8         # one trial per GPU (LocalCUDACluster)
    python flows/sweep.py ncf synth-tiny 2

The search space is YAML (configs/<model>/sweep.yaml, validated by configs.sweep). Each trial is the
normal single-process `train_model` task, submitted to prefect-dask's DaskTaskRunner, so it is
retried (resuming from its checkpoint) like any training run; the cluster has one single-threaded
worker per GPU, so trials never share a GPU. The ranked table is the artifact
`sweep-<model>-<dataset>-trials`; the best trial goes through `evaluate_model` and `register_model`,
so the champion rule is the one every training flow uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow
from prefect_dask import DaskTaskRunner

from configs.sweep import load_space
from flows.training import check_gpus, ran_with, run_id
from ncflow.data.sources import dataset_label
from ncflow.specs import spec
from tasks._run import artifact_key, run_logger
from tasks.data import fetch_raw, preprocess_data, processed_missing, raw_missing
from tasks.evaluate import evaluate_model
from tasks.register import register_model
from tasks.sweep import rank_trials
from tasks.train import train_model

CLUSTER = "ncflow.batch.cluster.local_cluster"  # every GPU one worker, or CPU processes


def dask_runner(gpus: int = 0, workers: int | None = None) -> DaskTaskRunner:
    """gpus > 0: a LocalCUDACluster of the first `gpus` GPUs; 0: `workers` CPU processes (default 2)."""
    if gpus:
        return DaskTaskRunner(cluster_class=CLUSTER, cluster_kwargs={"workers": gpus, "device": "cuda"})
    return DaskTaskRunner(cluster_class=CLUSTER, cluster_kwargs={"workers": workers or 2, "device": "cpu"})


@flow(
    name="sweep", flow_run_name="sweep-{model}-{dataset}", task_runner=DaskTaskRunner(cluster_class=CLUSTER)
)
def sweep(
    model: str,
    dataset: str,
    trials: int = 4,
    gpus: int = 0,
    space: str | None = None,
    epochs: int | None = None,
    source: str | None = None,
    data_dir: str = "data",
    runs_dir: str = "runs",
    registry_dir: str = "registry",
) -> dict[str, Any]:
    """`trials` trainings of `model` on `dataset` drawn from `space` (default configs/<model>/sweep.yaml),
    one per GPU (gpus > 0) or per CPU worker; the best by the validation metric is registered."""
    log = run_logger()
    what = spec(model)
    space_path = Path(space) if space else what.params.CONFIG_DIR / "sweep.yaml"
    search = load_space(space_path, set(what.params.model_fields))
    drawn, fixed = search.trials(trials), search.fixed
    given = {"epochs": epochs, "source": source}  # None: not given, so the space's `fixed` value stands
    common = {k: v for k, v in given.items() if v is not None}
    common |= {"data_dir": data_dir, "runs_dir": runs_dir, "registry_dir": registry_dir}
    one_each = {"gpus": 1 if gpus else 0, "cpu_processes": 1}
    params = [what.params.for_dataset(dataset, **{**fixed, **common, **t, **one_each}) for t in drawn]
    check_gpus(gpus)
    what = what.for_params(params[0])  # Mult-VAE or EASE swept on the other split: that split's entry
    model = what.name
    first, label = params[0], dataset_label(dataset)
    data_root = str(Path(data_dir).resolve())
    raw = fetch_raw.with_options(refresh_cache=raw_missing(dataset, data_root, source))(
        dataset, data_root, source
    )
    split = first.preprocess_config()
    prepare = preprocess_data.with_options(refresh_cache=processed_missing(label, raw, data_root, split))
    data = prepare(label, raw, data_root, split, device=first.device)

    root = Path(runs_dir).resolve() / run_id()
    futures = [
        train_model.submit(model, data, str(root / f"trial-{n}"), p.train_config(), 1, artifact_key(model, label, f"trial-{n}"))
        for n, p in enumerate(params)
    ]  # fmt: skip
    summaries, errors = [], []
    for future in futures:
        future.wait()
        ok = future.state.is_completed()
        summaries.append(future.result() if ok else None)
        errors.append(None if ok else str(future.state.message))
    ranked = rank_trials(model, label, drawn, summaries, errors)
    if ranked["best"] is None:
        raise RuntimeError(f"every one of the {trials} trials failed: {errors[0]}")
    best, winner = ranked["best"], params[ranked["best"]]
    summary = summaries[best]
    metric = what.selection_metric(winner)  # the champion rule's: validation HR@10 when held out
    log.info("best trial %d (%s %s): %s", best, ranked["metric"], summary.get(ranked["metric"]), drawn[best])
    scores = evaluate_model(model, summary["bundle"], data, winner.device, expected=summary, metric=metric)
    registered = register_model(
        model, label, summary["bundle"], data, scores, summary, ran_with(winner, summary),
        str(Path(registry_dir).resolve()), metric=metric, device=winner.device,
        keep_versions=winner.keep_versions, runs_dir=str(Path(runs_dir).resolve()),
    )  # fmt: skip
    return {
        "model": model, "dataset": label, "trials": len(drawn), "ranked_by": ranked["metric"],
        "measured_on": ranked["measured_on"], "best_trial": best, "best_params": drawn[best],
        **{name: scores[name] for name in what.metrics}, "table": ranked["rows"],
        "bundle": registered["path"], "version": registered["version"], "promoted": registered["promoted"],
        "champion": registered["champion"],
    }  # fmt: skip


def run_sweep(
    model: str, dataset: str, trials: int, gpus: int = 0, workers: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The flow on a cluster sized for this call: `gpus` GPU workers, or `workers` CPU processes."""
    return sweep.with_options(task_runner=dask_runner(gpus, workers))(model, dataset, trials, gpus, **kwargs)


if __name__ == "__main__":
    model_name, data_name, count = (sys.argv[1:] + ["ncf", "synth-tiny", "2"][len(sys.argv) - 1 :])[:3]
    print(run_sweep(model_name, data_name, int(count)))
