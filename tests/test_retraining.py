"""Retraining that learns: the temporal protocol (cold-start users and items counted apart), no work on
unchanged data, and the champion rule on held-out data neither model trained on."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from own_logs import LOG_FLAGS, SMALL_NCF, spread_over_time, string_log, write_csv

from configs import Columns, PreprocessConfig
from configs.ncf import NCFTrainParams
from models.ncf.compare import compare_bundles
from ncflow import registry
from ncflow.cli import main as cli
from ncflow.data.preprocess import preprocess, read_manifest
from ncflow.data.temporal_split import temporal_split
from ncflow.launch import run_trainer, torchrun_command

COLUMNS = Columns(user="customer", item="sku", rating="rating", timestamp="ts")


def test_the_temporal_split_tests_the_window_and_counts_what_it_cannot_test():
    # users 1..4, items 10..15; before the cutoff (t < 100) users 1-3 and items 10-14 appear
    user = np.array([1, 1, 1, 2, 2, 3, 1, 1, 2, 4, 3, 2, 1, 3])
    item = np.array([10, 11, 12, 10, 13, 14, 13, 10, 14, 10, 15, 13, 13, 11])
    time = np.array([1, 2, 3, 4, 5, 6, 100, 110, 120, 130, 140, 149, 149, 150])  # 150: after the window
    split = temporal_split(np, user, item, time, cutoff=100, horizon=50, negatives=4, validation=True)
    assert split.user_ids.tolist() == [1, 2, 3] and split.item_ids.tolist() == [10, 11, 12, 13, 14]
    assert list(zip(split.valid_user.tolist(), split.valid_item.tolist())) == [
        (0, 2),
        (1, 3),
    ]  # latest pre-cutoff
    assert list(zip(split.train_user.tolist(), split.train_item.tolist())) == [(0, 0), (0, 1), (1, 0), (2, 4)]
    # user 1: 13 new (10 a repeat); user 2: 14 new (13 a repeat of its validation item); user 3: only item 15 (cold)
    assert split.test_user.tolist() == [0, 1] and split.test_item.tolist() == [3, 4]
    indptr, targets = split.targets
    assert indptr.tolist() == [0, 1, 2] and targets.tolist() == [3, 4]
    assert split.cold == {
        "window_rows": 7, "cold_start_users": 1, "cold_start_items": 1, "cold_start_rows": 2, "repeat_rows": 2,
    }  # fmt: skip
    seen = {0: {0, 1, 2}, 1: {0, 3}}
    for row, negatives in zip(split.test_user.tolist(), split.test_negatives.tolist(), strict=True):
        assert not set(negatives) & seen[row]  # never an item the user had before the cutoff


def train_bundle(processed: Path, out: Path) -> Path:
    config = NCFTrainParams.for_dataset("synth-tiny", epochs=2).train_config()
    run_trainer(torchrun_command("ncf", processed, out, config, 1))
    return out / "bundle"


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("log")
    return write_csv(spread_over_time(string_log(folder)), folder / "events.csv")  # 2020-01-01 to 2021-12-01


def test_temporal_data_and_a_fair_comparison_with_an_older_champion(log, tmp_path):
    """The champion learnt from interactions before 2021-04-01 (leave-latest-out); the challenger from
    those before 2021-09-01, tested on the 30 days after. Users first seen in between are the
    champion's cold start."""
    old = preprocess("events", log, tmp_path, PreprocessConfig(columns=COLUMNS, until=dt.date(2021, 4, 1)))
    temporal = PreprocessConfig(
        columns=COLUMNS, holdout="temporal", cutoff=dt.date(2021, 9, 1), horizon_days=30
    )
    new = preprocess("events", log, tmp_path, temporal)
    manifest = read_manifest(new)
    assert manifest["temporal"] == {"cutoff": "2021-09-01", "horizon_days": 30, "test_until": "2021-10-01"}
    counts = manifest["counts"]
    test = pq.read_table(new / "test.parquet")
    targets = pq.read_table(new / "targets.parquet")
    assert counts["test_users"] == test.num_rows == targets.num_rows <= counts["users"]
    assert counts["cold_start_users"] > 0 and counts["window_rows"] > counts["cold_start_rows"] > 0

    champion = train_bundle(old, tmp_path / "champion")
    challenger = train_bundle(new, tmp_path / "challenger")
    result = compare_bundles(challenger, champion, new)

    # Independently, from the files: test users the champion never saw, and targets it trained on.
    champion_users = set(pq.read_table(champion / "users.parquet").column("id").to_pylist())
    users = pq.read_table(new / "users.parquet").column("id").to_pylist()
    test_ids = [users[u] for u in test.column("user").to_pylist()]
    assert result.unknown_users == sum(u not in champion_users for u in test_ids) > 0
    assert result.trained_on == 0  # its data ended five months before the window
    assert 0 < result.users <= result.test_users - result.unknown_users
    assert result.metric == "full_hr@10" and 0 <= result.champion <= 1 and 0 <= result.challenger <= 1
    assert f"{result.unknown_users:,} users" in result.describe()

    # Registered: the same comparison decides, and the card says on what.
    root = tmp_path / "registry"
    registry.register(root, "ncf", "events", champion, metrics={"hr@10": 0.5}, test_set=old.name)
    reg = registry.register(
        root, "ncf", "events", challenger, metrics={"hr@10": 0.1}, test_set=new.name,
        compare=lambda path: compare_bundles(challenger, path, new),
    )  # fmt: skip
    record = reg.entry.record
    assert record["metric"] == "full_hr@10" and record["comparison"]["users"] == result.users
    assert reg.promoted == (result.challenger > result.champion) and reg.previous_score == result.champion
    assert "the champion never saw" in reg.reason


def test_a_champion_is_never_scored_on_what_it_trained_on(log, tmp_path):
    """The champion trained on the whole log; the challenger is a backfill that ends in 2021-06, so many
    of its held-out (latest) items are pairs the champion trained on: they are left out for both."""
    full = preprocess("events", log, tmp_path, PreprocessConfig(columns=COLUMNS))
    backfill = preprocess(
        "events", log, tmp_path, PreprocessConfig(columns=COLUMNS, until=dt.date(2021, 6, 1))
    )
    champion = train_bundle(full, tmp_path / "champion")
    challenger = train_bundle(backfill, tmp_path / "challenger")
    result = compare_bundles(challenger, champion, backfill)
    champion_pairs = training_pairs(full)
    held_out = heldout_pairs(backfill)
    assert result.trained_on == len(held_out & champion_pairs) > 0
    assert result.users == len({u for u, _ in held_out - champion_pairs})  # one held-out item per user


def training_pairs(processed: Path) -> set[tuple[str, str]]:
    users = pq.read_table(processed / "users.parquet").column("id").to_pylist()
    items = pq.read_table(processed / "items.parquet").column("id").to_pylist()
    train = pq.read_table(processed / "train.parquet")
    return {
        (users[u], items[i])
        for u, i in zip(train.column("user").to_pylist(), train.column("item").to_pylist())
    }


def heldout_pairs(processed: Path) -> set[tuple[str, str]]:
    users = pq.read_table(processed / "users.parquet").column("id").to_pylist()
    items = pq.read_table(processed / "items.parquet").column("id").to_pylist()
    test = pq.read_table(processed / "test.parquet")
    return {
        (users[u], items[i]) for u, i in zip(test.column("user").to_pylist(), test.column("item").to_pylist())
    }


def test_the_same_command_on_unchanged_data_trains_nothing_and_force_retrains(
    prefect_server, log, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_csv(
        pq.read_table(log) if log.suffix == ".parquet" else __import__("pyarrow.csv").csv.read_csv(log),
        tmp_path / "events.csv",
    )
    command = ["train", "ncf", "--dataset", "events.csv", *LOG_FLAGS, *SMALL_NCF]
    assert cli(command) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert cli(command) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["skipped"] and second["version"] == first["version"] == 1
    assert second["reason"].startswith("no new data since v1 (the champion)")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == runs  # no trainer was started
    assert [e.version for e in registry.versions(tmp_path / "registry", "ncf", "events")] == [1]
    assert cli([*command, "--force"]) == 0
    forced = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert forced["version"] == 2 and "skipped" not in forced
    with open(tmp_path / "events.csv", "a") as handle:  # one more interaction: new data
        handle.write('"c4ca4238a0b9","SKU-1",5,1638000000\n')
    assert cli(command) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 3


def test_mult_vae_is_compared_without_the_test_users_the_champion_trained_on(log, tmp_path):
    """Two VAE-CF splits of the same log with other seeds hold out other users: some of the
    challenger's test users were the champion's training users, and are left out for both."""
    from configs.vaecf import VAECFTrainParams
    from models.vaecf.compare import compare_bundles as compare_vae

    def split(seed: int) -> Path:
        return preprocess(
            "events", log, tmp_path, PreprocessConfig(protocol="vaecf", columns=COLUMNS, seed=seed)
        )

    def train(processed: Path, out: Path) -> Path:
        config = VAECFTrainParams.for_dataset("synth-tiny", epochs=2).train_config()
        run_trainer(torchrun_command("vaecf", processed, out, config, 1))
        return out / "bundle"

    old, new = split(1), split(2)
    champion, challenger = train(old, tmp_path / "champion"), train(new, tmp_path / "challenger")
    result = compare_vae(challenger, champion, new)
    trained = set(pq.read_table(old / "train.parquet").column("user_id").to_pylist())
    assert set(pq.read_table(champion / "train_users.parquet").column("id").to_pylist()) == trained
    test_users = pq.read_table(new / "test_foldin.parquet").column("user_id").to_pylist()
    assert result.trained_on == sum(u in trained for u in test_users) > 0
    assert 0 < result.users <= result.test_users - result.trained_on
    assert result.metric == "ndcg@100" and "test users it trained on left out" in result.describe()
