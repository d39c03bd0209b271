"""`ncflow recommend --all`: every user's top-k through real Dask clusters (LocalCluster processes).

The models are untrained (random weights, wide enough to avoid ties): what is checked is the plumbing
(ids, ranks, the seen mask, partitioning, atomic output), not accuracy. Every row is checked against
a brute-force per-user ranking through the bundle's own `recommend`.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from configs import PreprocessConfig
from models.ncf.bundle import load_bundle as load_ncf
from models.ncf.bundle import recommend
from models.ncf.bundle import write_bundle as write_ncf
from models.ncf.model import NeuMF, NeuMFConfig
from models.ncf.train import TrainConfig as NCFTrainConfig
from models.vaecf.bundle import write_bundle as write_vae
from models.vaecf.model import MultVAE, VAEConfig
from models.vaecf.train import TrainConfig as VAETrainConfig
from ncflow import registry
from ncflow.batch.cluster import dask_client
from ncflow.batch.locate import locate_job
from ncflow.batch.recommend_all import ranges, recommend_all
from ncflow.cli import main as cli
from ncflow.data.preprocess import preprocess, read_manifest
from ncflow.data.sources import obtain_raw
from ncflow.errors import NcflowError


def random_weights(model: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """synth-tiny (500 users x 300 items) under both protocols, an NCF and a Mult-VAE registered."""
    root = tmp_path_factory.mktemp("recommend-all")
    data = root / "data"
    raw = obtain_raw("synth-tiny", data)
    ncf_data = preprocess("synth-tiny", raw, data, PreprocessConfig(protocol="ncf"))
    vae_data = preprocess("synth-tiny", raw, data, PreprocessConfig(protocol="vaecf"))
    counts = read_manifest(ncf_data)["counts"]
    config = NeuMFConfig(counts["users"], counts["items"], mf_dim=8, mlp_layers=(16, 8), dropout=0.0)
    ncf = NeuMF(config)
    random_weights(ncf)
    bundle = write_ncf(root / "ncf-bundle", ncf, config, NCFTrainConfig(), ncf_data, {"hr@10": 0.5})
    registry.register(
        root / "registry", "ncf", "synth-tiny", bundle, metrics={"hr@10": 0.5}, test_set=ncf_data.name
    )
    vae = MultVAE(VAEConfig(read_manifest(vae_data)["counts"]["items"], hidden=16, latent=8, dropout=0.0))
    random_weights(vae)
    bundle = write_vae(root / "vae-bundle", vae, VAETrainConfig(), vae_data, {"ndcg@100": 0.3})
    registry.register(
        root / "registry", "vae-cf", "synth-tiny", bundle, metrics={"ndcg@100": 0.3}, test_set=vae_data.name,
        metric="ndcg@100",
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def scheduler():
    """One 2-process cluster the tests join with --scheduler (each start imports torch in its workers:
    seconds per process, so the tests share it)."""
    with dask_client(workers=2, device="cpu") as client:
        yield client.scheduler.address


def run(root: Path, *args: str) -> int:
    common = [
        "--dataset",
        "synth-tiny",
        "--registry-dir",
        str(root / "registry"),
        "--data-dir",
        str(root / "data"),
    ]
    return cli(["recommend", "--all", *common, "--device", "cpu", "--users-per-chunk", "64", *args])


def test_every_user_gets_k_unseen_items_the_same_with_1_and_2_workers(root, scheduler, tmp_path, capsys):
    k = 7
    assert run(root, "-k", str(k), "--out", str(tmp_path / "one"), "--workers", "1") == 0  # a LocalCluster
    assert run(root, "-k", str(k), "--out", str(tmp_path / "two"), "--scheduler", scheduler) == 0  # 2 workers
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == str(tmp_path / "two") and lines[-2].startswith(f"{500 * k:,} rows")
    assert [p.name for p in sorted((tmp_path / "two").iterdir())] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    one, two = pq.read_table(tmp_path / "one"), pq.read_table(tmp_path / "two")
    assert one.column_names == ["user_id", "rank", "item_id", "score"]
    assert one.equals(two)  # same rows, same order, same scores

    bundle = load_ncf(registry.resolve(root / "registry", "ncf", "synth-tiny"))
    users = one.column("user_id").to_numpy()
    assert sorted(set(users.tolist())) == sorted(bundle.user_index) and np.all(
        np.bincount(np.unique(users, return_inverse=True)[1]) == k
    )
    for user in users[:: k * 50].tolist():  # every 50th user against the bundle's one-user recommend
        mine = one.filter(one.column("user_id").to_numpy() == user)
        seen = set(bundle.item_ids[bundle.seen[bundle.user_index[user]].values.to_numpy()].tolist())
        assert mine.column("rank").to_pylist() == list(range(1, k + 1))
        assert not seen & set(mine.column("item_id").to_pylist())
        expected = recommend(bundle, user, k)
        assert mine.column("item_id").to_pylist() == [e["item"] for e in expected]
        np.testing.assert_allclose(mine.column("score").to_numpy(), [e["score"] for e in expected], rtol=1e-5)


def test_vaecf_single_file_covers_every_user_with_known_items_masked(root, scheduler, tmp_path):
    out = tmp_path / "vae.parquet"
    assert run(root, "--model", "vae-cf", "-k", "5", "--out", str(out), "--scheduler", scheduler) == 0
    table = pq.read_table(out)
    assert [p.name for p in tmp_path.iterdir()] == ["vae.parquet"]  # the parts' staging folder is gone
    processed = Path(
        locate_job("vae-cf", "synth-tiny", registry_dir=root / "registry", data_dir=root / "data").data_dir
    )
    known: dict[int, set[int]] = {}
    for split in ("train", "valid_foldin", "valid_target", "test_foldin", "test_target"):
        part = pq.read_table(processed / f"{split}.parquet").to_pylist()
        for row in part:
            known.setdefault(row["user_id"], set()).update(row["items"])
    item_ids = pq.read_table(processed / "items.parquet").column("id").to_numpy()
    assert table.num_rows == 5 * len(known)
    by_user = table.group_by("user_id").aggregate([("item_id", "list")]).to_pylist()
    assert sorted(r["user_id"] for r in by_user) == sorted(known)
    for row in by_user:
        assert len(row["item_id_list"]) == 5
        assert not set(row["item_id_list"]) & {int(item_ids[i]) for i in known[row["user_id"]]}


def test_partitions_start_on_chunks_and_cover_every_user():
    assert ranges(10, 3, 2) == [(0, 6), (6, 10)]
    assert ranges(10, 3, 8) == [(0, 3), (3, 6), (6, 9), (9, 10)]  # fewer parts than workers
    assert ranges(0, 3, 2) == []


def dead_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "0"], "-k must be at least 1, got 0"),
        (["-k", "301"], "above the model's item count (300)"),
        (["-k", "200"], "unseen items, so not every user can get 200"),
        (["-k", "5", "--version", "9"], "has no version v9"),
        (
            ["-k", "5", "--scheduler", "tcp://127.0.0.1:PORT", "--connect-timeout", "2"],
            "no Dask scheduler answered",
        ),
    ],
)
def test_bad_input_one_line_and_no_output(root, scheduler, tmp_path, capsys, args, message):
    args = [a.replace("PORT", str(dead_port())) for a in args]
    if "--scheduler" not in args:
        args += ["--scheduler", scheduler]
    out = tmp_path / "recs.parquet"
    assert run(root, *args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ncflow: error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, k, message",
    [("out", 301, "above the item count"), ("out.parquet", 200, "fewer than 200 unseen items")],
)
def test_a_failing_worker_leaves_no_partial_output(root, scheduler, tmp_path, monkeypatch, name, k, message):
    """Parts fail on the workers (k above the item count, or above a user's unseen items: the caller's
    check switched off, and -1 padding is never written): the staging folder goes, and an earlier
    output at the same path is left as it was."""
    import ncflow.batch.recommend_all as module

    monkeypatch.setattr(module, "check_k", lambda k, sizes: None)
    job = locate_job("ncf", "synth-tiny", registry_dir=root / "registry", device="cpu", chunk=64)
    (tmp_path / name).write_text("earlier output") if name.endswith(".parquet") else (tmp_path / name).mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    with dask_client(scheduler=scheduler) as client, pytest.raises(ValueError, match=message):
        recommend_all(client, job, k, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(NcflowError, match="no ncf model registered"):
        locate_job("ncf", "synth-tiny", "latest", registry_dir=tmp_path)


def test_batch_recommend_flow_writes_the_same_rows_and_refuses_bad_k(
    root, scheduler, prefect_server, tmp_path
):
    """The flow's rows equal `ncflow recommend --all`'s on the same champion and cluster, row by row and
    score by score (the CLI's rows are checked against the bundle's own `recommend` above). A bad k
    fails the flow run with its reason, before anything is written."""
    from flows.batch_recommend import batch_recommend

    common = {"registry_dir": str(root / "registry"), "scheduler": scheduler, "device": "cpu"}
    result = batch_recommend("synth-tiny", k=3, out=str(tmp_path / "nightly"), **common)
    same = ["--dataset", "synth-tiny", "--registry-dir", str(root / "registry"), "--device", "cpu", "-k", "3"]
    assert cli(["recommend", "--all", *same, "--scheduler", scheduler, "--out", str(tmp_path / "cli")]) == 0
    nightly, by_cli = pq.read_table(tmp_path / "nightly"), pq.read_table(tmp_path / "cli")
    assert nightly.num_rows == 500 * 3 and nightly.equals(by_cli)
    champion = locate_job("ncf", "synth-tiny", registry_dir=root / "registry").bundle
    assert result["rows"] == 500 * 3 and result["path"] == str(tmp_path / "nightly")
    assert str(result["bundle"]) == str(champion), result

    with pytest.raises(NcflowError) as refused:
        batch_recommend("synth-tiny", k=0, out=str(tmp_path / "bad"), **common)
    assert str(refused.value) == "-k must be at least 1, got 0"
    assert not (tmp_path / "bad").exists()
