"""The `best` alias across model families (ncflow/best.py) through the registration task: it moves only to
a strictly better model, from whichever family, decided on validation on the NCF split; models trained
on the VAE-CF split never compete; a best on other data is scored with the newcomer on the newcomer's
held-out data, on the users and items both know (ncflow/best_compare.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from own_logs import spread_over_time, string_log, write_csv

from configs import Columns, PreprocessConfig
from ncflow import best, registry
from ncflow.batch.locate import locate_job
from ncflow.best_compare import compare_across
from ncflow.data.preprocess import preprocess, read_manifest
from ncflow.data.synth import write_synthetic
from ncflow.errors import NcflowError
from tasks.evaluate import score_bundle
from tasks.register import register_model


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("best")
    raw = write_synthetic("tiny", root / "raw")
    split = {
        "ncf": PreprocessConfig(protocol="ncf", validation=True),
        "ncf-plain": PreprocessConfig(protocol="ncf"),
        "vaecf": PreprocessConfig(protocol="vaecf"),
    }
    return {
        name: str(preprocess("synth-tiny", raw, root, config, device="cpu")) for name, config in split.items()
    }


def register(
    root: Path, model: str, data_dir: str, valid: float, test: float, metric: str, hr: float | None = None,
    dataset: str = "synth-tiny",
):  # fmt: skip
    bundle = root / "bundles" / f"{model}-{valid}-{test}"
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "weights").write_text("stand-in: registration copies whatever the bundle holds")
    metrics = {"full_ndcg@10": test, "full_hr@10": 2 * test, "hr@10": 0.5, "ndcg@100": test}
    if "valid" in metric:  # data with a validation split: every model reports its validation scores
        metrics |= {"valid_full_ndcg@10": valid, "valid_hr@10": valid if hr is None else hr}
    return register_model.fn(model, dataset, str(bundle), data_dir, metrics, {"epochs": 1}, {},
                             str(root / "registry"), metric=metric)  # fmt: skip


def test_best_moves_only_to_a_better_model_from_any_family(data, tmp_path):
    def current() -> tuple[str, int]:
        alias = best.read_best(tmp_path / "registry", "synth-tiny")
        return alias["model"], alias["version"]

    first = register(tmp_path, "ncf", data["ncf"], valid=0.10, test=0.20, metric="valid_hr@10")
    assert first["best_moved"] and current() == ("ncf", 1)
    assert register(tmp_path, "ease", data["ncf"], 0.12, 0.15, "valid_full_ndcg@10")["best_moved"]
    assert current() == ("ease", 1)  # EASE beats NeuMF on validation, though not on test: validation decides
    assert not register(tmp_path, "vae-cf-ncf", data["ncf"], 0.11, 0.30, "valid_full_ndcg@10")["best_moved"]
    assert not register(tmp_path, "ease", data["ncf"], 0.12, 0.40, "valid_full_ndcg@10")[
        "best_moved"
    ]  # a tie
    vae = register(tmp_path, "vae-cf", data["vaecf"], 0.90, 0.90, "ndcg@100")  # another split: never compared
    why = (best.best_dir(tmp_path / "registry", "synth-tiny") / best.COMPARISON).read_text()
    assert not vae["best_moved"] and current() == ("ease", 1)
    assert why.startswith("**Best stays ease v1.** Why: vae-cf v1 was trained on the vaecf split")
    again = register(tmp_path, "ncf", data["ncf"], 0.13, 0.10, "valid_hr@10", hr=0.05)
    assert again["best_moved"] and current() == ("ncf", 2)
    assert not again["promoted"]  # NeuMF's own champion rule (valid_hr@10) keeps v1: the aliases are separate
    assert registry.champion(tmp_path / "registry", "ncf", "synth-tiny").version == 1

    model, path = best.resolve_best(tmp_path / "registry", "synth-tiny")
    assert (model, path.name) == ("ncf", "v2")
    job = locate_job("best", "synth-tiny", registry_dir=tmp_path / "registry")
    assert job.model == "ncf" and job.bundle == str(path.resolve())
    with pytest.raises(NcflowError, match="leave out --version"):
        locate_job("best", "synth-tiny", "latest", registry_dir=tmp_path / "registry")
    table = (best.best_dir(tmp_path / "registry", "synth-tiny") / best.COMPARISON).read_text()
    assert table.startswith("**Best moved to ncf v2.**") and "| ease | v1 | ease champion | 0.1200 |" in table
    assert "| ncf | v1 | ncf champion | 0.1000 |" in table
    assert "| vae-cf-ncf | v1 | vae-cf-ncf champion | 0.1100 |" in table


@pytest.fixture(scope="module")
def older_and_newer(tmp_path_factory) -> dict[str, Path]:
    """A shop's log with string ids (tests/own_logs.py) split twice on the NCF protocol with validation:
    as it stood at 80% of its period (older data: users who started later are missing) and whole."""
    root = tmp_path_factory.mktemp("best-data")
    events = spread_over_time(string_log(root))
    ts = events.column("ts").to_numpy()
    cut = int(ts.min() + 0.8 * (ts.max() - ts.min()))
    older = write_csv(events.filter(pc.less(events.column("ts"), cut)), root / "older.csv")
    newer = write_csv(events, root / "newer.csv")
    columns = Columns(user="customer", item="sku", rating="rating", timestamp="ts")
    config = PreprocessConfig(protocol="ncf", validation=True, columns=columns)
    return {
        name: preprocess("shop", raw, root, config, device="cpu")
        for name, raw in (("older", older), ("newer", newer))
    }


def ease_bundle(data_dir: Path, out: Path) -> Path:
    """EASE fitted on `data_dir`'s training items (lambda 50)."""
    from models.common.heldout import load_splits
    from models.ease.bundle import write_bundle
    from models.ease.model import fit, gram
    from models.ease.train import TrainConfig

    splits = load_splits(data_dir)
    return write_bundle(
        out, fit(gram(splits.train, splits.n_items), 50.0), 50.0, "ncf", TrainConfig(), data_dir, {}
    )


def random_ncf_bundle(data_dir: Path, out: Path) -> Path:
    """An untrained NeuMF (random weights: about as good as chance) on `data_dir`'s users and items."""
    import torch

    from models.ncf.bundle import write_bundle
    from models.ncf.model import NeuMF, NeuMFConfig
    from models.ncf.train import TrainConfig

    counts = read_manifest(data_dir)["counts"]
    config = NeuMFConfig(counts["users"], counts["items"], mf_dim=8, mlp_layers=(16, 8), dropout=0.0)
    model = NeuMF(config)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return write_bundle(out, model, config, TrainConfig(), data_dir, {})


def random_vae_bundle(data_dir: Path, out: Path) -> Path:
    import torch

    from models.vaecf.bundle import write_bundle
    from models.vaecf.model import MultVAE, VAEConfig
    from models.vaecf.train import TrainConfig

    torch.manual_seed(0)
    model = MultVAE(VAEConfig(read_manifest(data_dir)["counts"]["items"], hidden=16, latent=8, dropout=0.0))
    return write_bundle(out, model, TrainConfig(), data_dir, {})


BUILD = {"ease": ease_bundle, "ncf": random_ncf_bundle, "vae-cf-ncf": random_vae_bundle}


def register_real(root: Path, model: str, data_dir: Path) -> dict:
    """Build `model` on `data_dir` and register it through the task, with its own scores on that data."""
    bundle = BUILD[model](data_dir, root / "bundles" / f"{model}-{data_dir.name}")
    metrics = score_bundle(model, bundle, data_dir)
    metric = "valid_hr@10" if model == "ncf" else "valid_full_ndcg@10"
    return register_model.fn(model, "shop", str(bundle), str(data_dir), metrics, {"epochs": 1}, {},
                             str(root / "registry"), metric=metric)  # fmt: skip


@pytest.mark.parametrize("model", ["ease", "vae-cf-ncf"])
def test_the_fair_comparison_scores_each_family_as_its_own_evaluation(older_and_newer, tmp_path, model):
    """Against an NCF model on the same data (every user and item shared, only its training items left
    out, which are no targets), each model scores what its own evaluation gives it."""
    data = older_and_newer["newer"]
    mine = BUILD[model](data, tmp_path / model)
    ncf = random_ncf_bundle(data, tmp_path / "ncf")
    result = compare_across((model, mine), ("ncf", ncf), data)
    assert result.users == result.test_users == 500 and result.unknown_users == result.trained_on == 0
    assert result.challenger == pytest.approx(score_bundle(model, mine, data)["full_ndcg@10"], abs=1e-6)
    assert result.champion == pytest.approx(score_bundle("ncf", ncf, data)["full_ndcg@10"], abs=1e-6)


def original_pairs(data_dir: Path, split: str) -> set[tuple[str, str]]:
    """(customer, sku) of every row of an NCF split's `split`."""
    users = pq.read_table(data_dir / "users.parquet").column("id").to_pylist()
    items = pq.read_table(data_dir / "items.parquet").column("id").to_pylist()
    table = pq.read_table(data_dir / f"{split}.parquet", columns=["user", "item"]).to_pylist()
    return {(users[row["user"]], items[row["item"]]) for row in table}


def test_targets_the_best_trained_on_are_left_out_for_both(older_and_newer, tmp_path):
    """A best trained on data reaching later than the newcomer's (a window moved back, a re-pulled log)
    trained on some of the newcomer's held-out items: those are not scored, for either model; what it
    trained on is read from its split's folder, or from its bundle where the folder is gone."""
    older, newer = older_and_newer["older"], older_and_newer["newer"]
    ease, ncf = ease_bundle(older, tmp_path / "ease"), random_ncf_bundle(newer, tmp_path / "ncf")
    overlap = original_pairs(older, "test") & original_pairs(newer, "train")
    from_data = compare_across(("ease", ease), ("ncf", ncf), older, incumbent_data=newer)
    from_bundle = compare_across(("ease", ease), ("ncf", ncf), older)
    assert from_data.trained_on == from_bundle.trained_on == len(overlap) > 0
    assert from_data.users == 450 - len(overlap) and from_data.as_record() == from_bundle.as_record()
    assert f"{len(overlap):,} held-out items it trained on left out" in from_data.describe()


def test_a_best_from_older_data_is_compared_on_the_new_data_and_the_alias_moves_or_stays(
    older_and_newer, tmp_path, caplog
):
    """A best registered on older data and a newcomer on newer data: both scored on the newcomer's
    held-out users and items they both know. A better newcomer moves the alias; a worse one leaves it,
    and a best that cannot be scored stays with the error in its reason; each reason is in the log and
    comparison.md."""
    caplog.set_level(logging.INFO, logger="ncflow")
    older, newer = older_and_newer["older"], older_and_newer["newer"]
    moves, stays, broken = tmp_path / "moves", tmp_path / "stays", tmp_path / "broken"

    assert register_real(moves, "ncf", older)["best_moved"]  # an untrained NeuMF on the older data
    moved = register_real(moves, "ease", newer)  # EASE on the new data: better than chance
    alias = best.read_best(moves / "registry", "shop")
    assert moved["best_moved"] and (alias["model"], alias["version"]) == ("ease", 1)
    fair = alias["comparison"]
    assert fair["challenger"] > fair["champion"] and 0 < fair["users"] < fair["test_users"] == 500
    assert fair["unknown_users"] > 0  # users who started after the older data ended: NeuMF cannot score them
    assert alias["reason"].startswith(
        f"full_ndcg@10 {fair['challenger']:.4f} beats ncf v1's {fair['champion']:.4f} on the same held-out data ("
    )
    table = (best.best_dir(moves / "registry", "shop") / best.COMPARISON).read_text()
    assert (
        table.startswith("**Best moved to ease v1.** Why: full_ndcg@10")
        and "| ncf | v1 | best before |" in table
    )
    assert f"best shop: moved ({alias['reason']})" in caplog.messages

    assert register_real(stays, "ease", older)["best_moved"]
    kept = register_real(stays, "ncf", newer)
    alias = best.read_best(stays / "registry", "shop")
    assert not kept["best_moved"] and (alias["model"], alias["version"]) == ("ease", 1)
    table = (best.best_dir(stays / "registry", "shop") / best.COMPARISON).read_text()
    assert (
        table.startswith("**Best stays ease v1.** Why: full_ndcg@10") and "does not beat ease v1's" in table
    )
    assert "on the same held-out data (500 of 500 test users)" in table  # EASE folds in every user

    register(broken, "ncf", str(older), 0.1, 0.1, "valid_hr@10", dataset="shop")  # a stand-in bundle
    register_real(broken, "ease", newer)
    reason = (best.best_dir(broken / "registry", "shop") / best.COMPARISON).read_text().splitlines()[0]
    assert reason.startswith(
        "**Best stays ncf v1.** Why: ncf v1 could not be compared on this data (FileNotFoundError: "
    )
    assert reason.endswith("is not an NCF model bundle (no model.safetensors)): kept.")
    assert any(m.startswith("best shop: stays (ncf v1 could not be compared") for m in caplog.messages)


def test_recommend_best_says_when_there_is_none(tmp_path, capsys):
    from ncflow.cli import main as cli

    assert cli(["recommend", "--model", "best", "--dataset", "synth-tiny", "--user", "1",
                "--registry-dir", str(tmp_path)]) == 2  # fmt: skip
    assert "no `best` model for synth-tiny" in capsys.readouterr().err
    assert json.dumps(best.read_best(tmp_path, "synth-tiny")) == "null"
