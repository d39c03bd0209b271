"""A user's own log, end to end as the user types it: string ids (customers, SKUs) from a CSV file and
from a folder of hive-partitioned Parquet files, through `ncflow train` (the README's main job,
ncflow/cli/train.py, on a real temporary Prefect server), then `ncflow recommend` for one user and for
every user, answered in the original strings."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from own_logs import LOG_FLAGS, SMALL_NCF, string_log, write_csv, write_lake

from ncflow import best
from ncflow.cli import main as cli
from ncflow.data.preprocess import read_manifest


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return string_log(tmp_path_factory.mktemp("log"))


def train(capsys, *args: str) -> dict:
    assert cli(["train", *args]) == 0, capsys.readouterr().err[-3000:]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def recommend(capsys, *args: str) -> dict:
    """`ncflow recommend ... --json`'s answer, with what it printed on stderr under "stderr"."""
    assert cli(["recommend", *args]) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr()
    return {**json.loads(printed.out.strip().splitlines()[-1]), "stderr": printed.err}


def seen_by(events, who: str) -> set[str]:
    mask = [c == who for c in events.column("customer").to_pylist()]
    return set(events.filter(mask).column("sku").to_pylist())


def test_string_ids_from_a_csv_train_and_recommend_in_the_original_strings(
    prefect_server, events, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # data/, runs/ and registry/ land here, as for a user in a fresh folder
    write_csv(events, tmp_path / "events.csv")
    result = train(capsys, "ncf", "--dataset", "events.csv", *LOG_FLAGS, *SMALL_NCF)
    assert (result["dataset"], result["version"], result["promoted"]) == ("events", 1, True)
    users = pq.read_table(Path(result["bundle"]) / "users.parquet").column("id")
    assert str(users.type) == "string" and set(users.to_pylist()) == set(
        events.column("customer").to_pylist()
    )

    who = events.column("customer")[0].as_py()
    answer = recommend(capsys, "--dataset", "events", "--user", who, "-k", "10", "--json")
    items = [row["item"] for row in answer["items"]]
    assert answer["user"] == who and len(items) == 10 and len(set(items)) == 10
    assert all(isinstance(i, str) and i.startswith("SKU-") for i in items)
    assert not set(items) & seen_by(events, who)  # what the user already has is never recommended
    assert set(items) <= set(events.column("sku").to_pylist())

    assert cli(["recommend", "--all", "--dataset", "events", "-k", "5", "--out", "recs.parquet"]) == 0
    recs = pq.read_table(tmp_path / "recs.parquet")
    assert (
        str(recs.schema.field("user_id").type) == "string"
        and str(recs.schema.field("item_id").type) == "string"
    )
    assert recs.num_rows == 500 * 5 and set(recs.column("user_id").to_pylist()) == set(users.to_pylist())
    first = recs.filter([u == who for u in recs.column("user_id").to_pylist()]).column("item_id").to_pylist()
    assert first == items[:5]  # the batch job and the one-user answer rank alike


def test_a_hive_partitioned_parquet_folder_reads_like_the_csv(
    prefect_server, events, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_lake(events, tmp_path / "lake")
    assert len(list((tmp_path / "lake").glob("year=*/part-0.parquet"))) > 5
    result = train(capsys, "ncf", "--dataset", "lake/", *LOG_FLAGS, *SMALL_NCF)
    assert result["dataset"] == "lake" and result["version"] == 1
    manifest = read_manifest(next((tmp_path / "data" / "processed").glob("lake-ncf-*")))
    assert manifest["source"]["rows"] == events.num_rows
    assert (manifest["counts"]["users"], manifest["counts"]["items"]) == (500, 300)
    who = events.column("customer")[7].as_py()
    answer = recommend(capsys, "--dataset", "lake", "--user", who, "-k", "3", "--json")
    assert [type(row["item"]) for row in answer["items"]] == [str] * 3


def test_vae_cf_folds_in_string_items(prefect_server, events, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_csv(events, tmp_path / "events.csv")
    small = ["--gpus", "0", "--epochs", "2", "--hidden", "32", "--latent", "8", "--batch-size", "64"]
    result = train(capsys, "vae-cf", "--dataset", "events.csv", *LOG_FLAGS, *small)
    assert result["dataset"] == "events" and result["version"] == 1
    liked = "SKU-6740,SKU-7773,not-an-item"
    answer = recommend(
        capsys, "--model", "vae-cf", "--dataset", "events", "--items", liked, "-k", "5", "--json"
    )
    assert answer["given_items"] == ["SKU-6740", "SKU-7773", "not-an-item"]
    items = [row["item"] for row in answer["items"]]
    assert (
        len(items) == 5
        and not {"SKU-6740", "SKU-7773"} & set(items)
        and all(i.startswith("SKU-") for i in items)
    )
    assert "1 of 3 item ids are unknown to this model" in answer["stderr"]
    out = ["recommend", "--all", "--model", "vae-cf", "--dataset", "events", "-k", "4", "--out", "recs/"]
    assert cli(out) == 0
    recs = pq.read_table(tmp_path / "recs")
    assert str(recs.schema.field("user_id").type) == "string" and recs.column("item_id").to_pylist()[
        0
    ].startswith("SKU-")


def test_recommend_for_one_user_refuses_k_below_one(tmp_path, capsys):
    assert cli(["recommend", "--user", "x", "-k", "0", "--registry-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "ncflow: error: -k must be at least 1, got 0"


def read_recs(path: Path, events, k: int):
    """`recommend --all`'s rows, checked: string ids both ways, k ranked SKUs for each of the 500 users."""
    recs = pq.read_table(path)
    assert [str(recs.schema.field(c).type) for c in ("user_id", "item_id")] == ["string", "string"]
    assert recs.num_rows == 500 * k and set(recs.column("user_id").to_pylist()) == set(
        events.column("customer").to_pylist()
    )
    assert set(recs.column("item_id").to_pylist()) <= set(events.column("sku").to_pylist())
    assert recs.column("rank").to_pylist()[:k] == list(range(1, k + 1))
    return recs


SMALL_VAE = ["--gpus", "0", "--epochs", "1", "--hidden", "32", "--latent", "8", "--batch-size", "64"]


@pytest.mark.parametrize(
    "model, args",
    [
        ("ease", ["ease", "--gpus", "0", "--lambdas", "50,500"]),
        ("ncf", ["ncf", *SMALL_NCF, "--architecture", "mf", "--epochs", "1"]),
        ("vae-cf-ncf", ["vae-cf", "--protocol", "ncf", *SMALL_VAE]),
    ],
)
def test_recommend_all_answers_in_strings_for_every_family(
    prefect_server, events, tmp_path, monkeypatch, capsys, model, args
):
    """EASE, MF (`--architecture mf`) and Mult-VAE on the NCF split; NeuMF and Mult-VAE on its own split
    are the tests above. EASE's scorer once built NumPy's fixed-width unicode from string ids, which
    Arrow refuses; `--model best` reaches the same scorer when best is EASE."""
    monkeypatch.chdir(tmp_path)
    write_csv(events, tmp_path / "events.csv")
    result = train(capsys, args[0], "--dataset", "events.csv", *LOG_FLAGS, *args[1:])
    assert result["version"] == 1
    every = ["recommend", "--all", "--dataset", "events", "--device", "cpu", "-k", "4"]
    assert cli([*every, "--model", model, "--out", "recs.parquet"]) == 0, capsys.readouterr().err[-3000:]
    recs = read_recs(tmp_path / "recs.parquet", events, 4)
    if model == "ease":  # every item a user has is masked: none comes back
        rows = recs.to_pylist()
        assert not any(row["item_id"] in seen_by(events, row["user_id"]) for row in rows[:400])
    assert best.read_best(tmp_path / "registry", "events")["model"] == model  # the first on the ncf split
    assert cli([*every, "--model", "best", "--out", "best.parquet"]) == 0, capsys.readouterr().err[-3000:]
    assert read_recs(tmp_path / "best.parquet", events, 4).equals(recs)
