"""The "no new data since vN" skip (ncflow/fingerprint.py, flows/training.py): a run stops only when the
data, the settings and the code are all those of a registered version. Every training setting is part
of the fingerprint, so changing one retrains; where things live (runs_dir, data_dir, registry_dir) is
not, so moving the run folders skips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from own_logs import LOG_FLAGS, string_log, write_csv

from configs.ease import EASETrainParams
from configs.ncf import NCFTrainParams
from configs.vaecf import VAECFTrainParams
from ncflow import registry
from ncflow.cli import main as cli
from ncflow.fingerprint import NOT_SETTINGS, fingerprint

TINY_NCF = ["--gpus", "0", "--epochs", "1", "--batch-size", "2048", "--mf-dim", "8", "--mlp-layers", "16,8"]


def changed(value: Any) -> Any:
    """Another valid value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2  # even: mlp_layers' first size must stay even
    if isinstance(value, float):
        return value / 2 if value else 0.25
    if isinstance(value, list | tuple):
        return [changed(value[0]), *value[1:]]
    if value is None:
        return None  # handled by the caller
    return value + "x"


@pytest.mark.parametrize("params_cls", [NCFTrainParams, VAECFTrainParams, EASETrainParams])
def test_every_setting_is_in_the_fingerprint_and_no_path_is(params_cls, tmp_path) -> None:
    (tmp_path / "events.csv").write_text("u,i\n1,2\n")
    log = str(tmp_path / "events.csv")
    base = params_cls.for_dataset(log, user_col="u", item_col="i").model_dump(mode="json")
    split = {"protocol": "ncf"}
    where = {
        "data_dir",
        "runs_dir",
        "registry_dir",
        "force",
        "scheduler",
        "rendezvous_timeout",
        "keep_versions",
    }
    assert set(NOT_SETTINGS) == where  # where, how hard and what to keep, never what is trained
    first = fingerprint("md5", base, split)
    for name, value in base.items():
        if name in NOT_SETTINGS:
            continue
        other = changed(value) if value is not None else 7
        assert fingerprint("md5", {**base, name: other}, split)["settings"] != first["settings"], name
    for name in ("runs_dir", "data_dir", "registry_dir"):
        assert fingerprint("md5", {**base, name: "/elsewhere"}, split) == first, name
    assert fingerprint("md5", base, {"protocol": "vaecf"})["settings"] != first["settings"]
    assert fingerprint("other", base, split)["data"] != first["data"]


def train(capsys, *args: str) -> dict:
    assert cli(["train", *args]) == 0, capsys.readouterr().err[-3000:]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_changed_setting_retrains_and_only_a_changed_runs_dir_skips(
    prefect_server, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    events = write_csv(string_log(tmp_path / "log"), tmp_path / "events.csv")
    command = ["ncf", "--dataset", str(events), *LOG_FLAGS, *TINY_NCF]
    first = train(capsys, *command)
    assert first["version"] == 1 and "skipped" not in first

    moved = train(capsys, *command, "--runs-dir", "elsewhere")  # only where run folders go
    assert moved["skipped"] and moved["version"] == 1
    assert moved["reason"].startswith("no new data since v1 (the champion)")
    assert not (tmp_path / "elsewhere").exists()  # no trainer started

    retrained = train(capsys, *command, "--runs-dir", "elsewhere", "--dropout", "0.2")  # a setting
    assert "skipped" not in retrained and retrained["version"] == 2
    assert [p.parent.name for p in (tmp_path / "elsewhere").glob("*/bundle")]  # trained there
    versions = registry.versions(tmp_path / "registry", "ncf", "events")
    assert [(v.version, v.record["params"]["dropout"]) for v in versions] == [(1, 0.5), (2, 0.2)]
    assert versions[0].record["fingerprint"]["data"] == versions[1].record["fingerprint"]["data"]
