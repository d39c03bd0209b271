"""Sweeps: the space's validation and draws, the ranking rule, and a 2-trial sweep of NCF on
synth-tiny run through a real (temporary) Prefect server and prefect-dask on a 2-process LocalCluster
(each trial on its own worker process, ranked on validation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from configs.ncf import NCFTrainParams
from configs.sweep import load_space
from configs.vaecf import VAECFTrainParams
from ncflow import registry
from ncflow.cli import main as cli
from ncflow.errors import NcflowError
from ncflow.sweep import rank_rows

NCF_FIELDS = set(NCFTrainParams.model_fields)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_shipped_spaces_load_and_draw_valid_trials():
    for params in (NCFTrainParams, VAECFTrainParams):
        space = load_space(params.CONFIG_DIR / "sweep.yaml", set(params.model_fields))
        trials = space.trials(5)
        assert trials == space.trials(5) and len({json.dumps(t) for t in trials}) > 1  # seeded, varied
        for trial in trials:
            params.for_dataset("synth-tiny", **space.fixed, **trial)  # each one a valid training run
            assert set(trial) == set(space.space)


def test_grid_takes_combinations_in_order_and_ranges_stay_inside(tmp_path):
    grid = load_space(write(tmp_path, "method: grid\nspace: {lr: [0.1, 0.2], mf_dim: [8, 16]}"), NCF_FIELDS)
    assert grid.trials(3) == [{"lr": 0.1, "mf_dim": 8}, {"lr": 0.1, "mf_dim": 16}, {"lr": 0.2, "mf_dim": 8}]
    with pytest.raises(NcflowError, match="only 4 combinations"):
        grid.trials(5)
    ranged = load_space(write(tmp_path, "space: {lr: {low: 0.001, high: 0.1, log: true}}"), NCF_FIELDS)
    assert all(0.001 <= t["lr"] <= 0.1 for t in ranged.trials(50))


@pytest.mark.parametrize(
    "text, message",
    [
        ("space: {learning_rate: [0.1]}", "learning_rate not training parameters"),
        ("method: grid\nspace: {lr: {low: 0.1, high: 0.2}}", "a grid needs a list"),
        ("space: {lr: {low: 0.2, high: 0.1}}", "must be below high"),
        ("space: {}", "space"),
        ("spaces: {lr: [0.1]}", "spaces"),
    ],
)
def test_bad_spaces_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(NcflowError, match=message):
        load_space(write(tmp_path, text), NCF_FIELDS)


def test_ranking_uses_validation_when_reported_else_test_and_puts_failures_last():
    trials = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}]
    test_only = [{"hr@10": 0.5, "epochs": 2}, None, {"hr@10": 0.7, "epochs": 2}]
    rows, key, what = rank_rows("ncf", trials, test_only, [None, "boom\ntrace", None])
    assert key == "hr@10" and what.startswith("test")
    assert [(r["rank"], r["trial"]) for r in rows] == [(1, 2), (2, 0), (None, 1)]
    assert rows[-1]["status"] == "failed: boom"
    with_valid = [{"hr@10": 0.9, "valid_hr@10": 0.4}, {"hr@10": 0.1, "valid_hr@10": 0.6}, None]
    rows, key, what = rank_rows("ncf", trials, with_valid, [None, None, "x"])
    assert key == "valid_hr@10" and what == "validation" and rows[0]["trial"] == 1
    # Mult-VAE's bundle holds its best validation epoch: trials rank by that epoch's score, not the last's.
    vae = [{"ndcg@100": 0.40, "best_ndcg100": 0.41}, {"ndcg@100": 0.30, "best_ndcg100": 0.45}, None]
    rows, key, what = rank_rows("vae-cf", trials, vae, [None, None, "x"])
    assert key == "best_ndcg100" and what.startswith("validation") and rows[0]["trial"] == 1


def test_two_trial_sweep_on_a_2_process_cluster_registers_its_best(tmp_path, capsys, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.chdir(tmp_path)
    shipped = yaml.safe_load((NCFTrainParams.CONFIG_DIR / "sweep.yaml").read_text())
    space = write(tmp_path, yaml.safe_dump({**shipped, "fixed": {**shipped["fixed"], "epochs": 2}}))
    with prefect_test_harness(server_startup_timeout=120):
        code = cli(
            [
                "sweep",
                "ncf",
                "--dataset",
                "synth-tiny",
                "--trials",
                "2",
                "--workers",
                "2",
                "--space",
                str(space),
            ]
        )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table = result["table"]
    assert [r["rank"] for r in table] == [1, 2] and all(r["status"] == "ok" for r in table)
    assert [r["epochs"] for r in table] == [2, 2]  # the space's fixed settings reach every trial
    # Ranked on validation (the shipped space holds each user's second-latest item out), never on test.
    assert (result["ranked_by"], result["measured_on"]) == ("valid_hr@10", "validation")
    assert result["best_trial"] == table[0]["trial"] and table[0]["valid_hr@10"] >= table[1]["valid_hr@10"]
    # The trials ran on the cluster: two Dask worker processes, neither of them this one.
    workers = [r["worker"] for r in table]
    pids = {w.rsplit(" pid ", 1)[1] for w in workers}
    assert all(w.startswith("tcp://") for w in workers) and len(set(workers)) == len(pids) == 2, workers
    assert str(os.getpid()) not in pids
    champion = registry.champion(tmp_path / "registry", "ncf", "synth-tiny")
    assert champion is not None and champion.version == result["version"] == 1
    assert champion.record["params"]["lr"] == result["best_params"]["lr"]
    assert champion.record["metric"] == "valid_hr@10"  # registered on the selection metric too
    assert sorted(p.name for p in next((tmp_path / "runs").iterdir()).iterdir()) == ["trial-0", "trial-1"]
