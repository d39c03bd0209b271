"""EASE: the closed form against NumPy, the trainer on both splits (lambda on validation, evaluation that
reproduces it, metrics by definition), fold-in, Mult-VAE on the NCF split, and the flow end to end
with `recommend` from the bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from configs import PreprocessConfig
from models.common.full_rank import CSR
from models.common.heldout import load_splits
from models.ease.bundle import load_bundle, recommend, recommend_foldin
from models.ease.evaluate import evaluate_bundle
from models.ease.model import fit, gram, objective
from ncflow.cli import main as cli
from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]


def numpy_ease(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck's closed form, written from the paper in float64: B = I - P diagMat(1/diag(P))."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_equals_a_numpy_reference_of_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((40, 15)) < 0.3).astype(np.float64)
    users, items = np.nonzero(x)
    train = CSR.from_pairs(torch.from_numpy(users), torch.from_numpy(items), 40)
    g = gram(train, 15, chunk=16)  # several chunks of users
    assert torch.equal(g, torch.from_numpy(x.T @ x).float())  # co-occurrence counts, exact
    for lam in (0.5, 10.0):
        b = fit(g, lam)
        assert np.allclose(b.double().numpy(), numpy_ease(x, lam), atol=2e-5)
        assert torch.all(torch.diagonal(b) == 0)
        direct = ((x - x @ b.double().numpy()) ** 2).sum() + lam * (b.double().numpy() ** 2).sum()
        assert objective(g, b, lam) == pytest.approx(direct, rel=1e-4)
    with pytest.raises(ValueError, match="lambda must be > 0"):
        fit(g, 0.0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ease")
    raw = write_synthetic("tiny", root / "raw")
    return {
        "ncf": preprocess("synth-tiny", raw, root, PreprocessConfig(protocol="ncf", validation=True), device="cpu"),
        "vaecf": preprocess("synth-tiny", raw, root, PreprocessConfig(protocol="vaecf"), device="cpu"),
    }  # fmt: skip


def fit_ease(data: Path, out: Path) -> tuple[list[dict], dict]:
    command = [sys.executable, "-m", "models.ease.train", "--data", str(data), "--out", str(out), "--device", "cpu",
               "--lambdas", "5,50,500"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "epoch"], events[-1]


@pytest.mark.parametrize("protocol, key", [("ncf", "valid_full_ndcg@10"), ("vaecf", "valid_ndcg@100")])
def test_lambda_is_picked_on_validation_and_the_bundle_reproduces_the_trainer(
    folders, tmp_path, protocol, key
):
    epochs, done = fit_ease(folders[protocol], tmp_path)
    assert [e["lambda"] for e in epochs] == [5.0, 50.0, 500.0] and all(key in e for e in epochs)
    best = max(epochs, key=lambda e: e[key])
    assert (
        done["lambda"] == best["lambda"] and done["weights_epoch"] == best["epoch"] and done[key] == best[key]
    )
    scores = evaluate_bundle(Path(done["bundle"]), folders[protocol])  # B as saved, scored anew
    headline = "full_ndcg@10" if protocol == "ncf" else "ndcg@100"
    assert scores[headline] == done[headline] and scores[key] == done[key]
    assert scores[headline] > scores[f"popularity_{headline}"] > 0


def test_full_ranking_of_ease_on_the_ncf_split_by_definition(folders, tmp_path):
    """Each user's training items in, B out of NumPy, the held-out item ranked among the unseen by hand."""
    _, done = fit_ease(folders["ncf"], tmp_path)
    scores = evaluate_bundle(Path(done["bundle"]), folders["ncf"])
    data = folders["ncf"]
    train, valid = pq.read_table(data / "train.parquet"), pq.read_table(data / "valid.parquet")
    test = pq.read_table(data / "test.parquet").column("item").to_numpy()
    n_users, n_items = len(test), json.loads((data / "manifest.json").read_text())["counts"]["items"]
    x = np.zeros((n_users, n_items))
    x[train.column("user").to_numpy(), train.column("item").to_numpy()] = 1.0
    s = x @ numpy_ease(x, done["lambda"])
    seen = x.copy()
    seen[valid.column("user").to_numpy(), valid.column("item").to_numpy()] = 1.0  # masked at test, not input
    ranks = np.array([((s[u] >= s[u, t]) & (seen[u] == 0)).sum() - 1 for u, t in enumerate(test)])
    assert scores["full_hr@10"] == pytest.approx(
        (ranks < 10).mean(), abs=1.5 / n_users
    )  # a near-tie may flip
    assert scores["full_recall@20"] == pytest.approx((ranks < 20).mean(), abs=1.5 / n_users)


def test_fold_in_equals_scoring_the_same_user_from_training(folders, tmp_path):
    _, done = fit_ease(folders["ncf"], tmp_path)
    bundle = load_bundle(Path(done["bundle"]))
    for user in bundle.user_ids[:5]:
        liked = [bundle.item_ids[i] for i in bundle.seen[bundle.user_index[user]].values.to_pylist()]
        known = recommend(bundle, user, 10)
        assert recommend_foldin(bundle, liked, 10) == known  # x B for the same row: the same list and scores
        assert not {item["item"] for item in known} & set(liked)
    with pytest.raises(ValueError, match="nothing to fold in"):
        recommend_foldin(bundle, ["no such item"], 5)


def test_mult_vae_reads_the_ncf_split_as_the_same_rows(folders):
    from models.vaecf.data import load_vae_data

    data, splits = load_vae_data(folders["ncf"]), load_splits(folders["ncf"])
    valid = pq.read_table(folders["ncf"] / "valid.parquet")
    assert data.valid_foldin.rows == valid.num_rows and data.test_foldin.rows == splits.train.rows
    user, item = valid.column("user").to_pylist()[0], valid.column("item").to_pylist()[0]
    row = lambda csr, r: csr.indices[csr.indptr_host[r] : csr.indptr_host[r + 1]].tolist()  # noqa: E731
    assert row(data.valid_target, 0) == [item] and row(data.valid_foldin, 0) == row(data.train, user)
    assert item not in row(data.test_foldin, user) and item in row(
        data.masked("test"), user
    )  # seen, not input


def test_mult_vae_trains_on_the_ncf_split_and_its_evaluation_reproduces_it(folders, tmp_path):
    from models.vaecf.evaluate import evaluate_bundle as vae_evaluate

    command = [sys.executable, "-m", "models.vaecf.train", "--data", str(folders["ncf"]), "--out", str(tmp_path),
               "--device", "cpu", "--epochs", "2", "--hidden", "32", "--latent", "8", "--batch-size", "64"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    result = vae_evaluate(Path(summary["bundle"]), folders["ncf"])
    assert result["mult_vae"]["full_ndcg@10"] == summary["test_full_ndcg@10"]
    assert result["users"] == json.loads((folders["ncf"] / "manifest.json").read_text())["counts"]["users"]
    assert "ease_full_ndcg@10" in result["baselines"] and "valid" in result


def test_ease_flow_registers_on_either_split_and_recommends(prefect_server, tmp_path, capsys, monkeypatch):
    from flows.ease_train import ease_train

    monkeypatch.chdir(tmp_path)
    ncf = ease_train("synth-tiny")
    vae = ease_train("synth-tiny", protocol="vaecf", lambdas=[20.0, 200.0])
    assert ncf["model"] == "ease" and vae["model"] == "ease-vaecf"  # their own registry folders
    assert (
        ncf["promoted"] and vae["promoted"] and ncf["trainer_valid_full_ndcg@10"] == ncf["valid_full_ndcg@10"]
    )
    assert Path(ncf["bundle"]).parent.parent.name == "ease" and "ndcg@100" in vae
    card = (Path(ncf["bundle"]) / "MODEL_CARD.md").read_text()
    assert "| item popularity |" in card and "| lambda |" in card  # the epochs table: one row per lambda
    capsys.readouterr()

    assert cli(["recommend", "--model", "ease", "--dataset", "synth-tiny", "--user", "1", "--json"]) == 0
    by_user = json.loads(capsys.readouterr().out)
    assert len(by_user["items"]) == 10
    assert (
        cli(["recommend", "--model", "ease", "--dataset", "synth-tiny", "--user", "1", "--items", "1"]) == 2
    )
    assert cli(["recommend", "--all", "--model", "best", "--dataset", "synth-tiny", "-k", "3", "--out", "recs.parquet",
                "--device", "cpu"]) == 0  # fmt: skip
    rows = pq.read_table(tmp_path / "recs.parquet")
    assert rows.num_rows == 3 * len(load_bundle(Path(ncf["bundle"])).user_ids)  # best is the ease model
    first = rows.filter(rows.column("user_id").to_numpy() == 1).column("item_id").to_pylist()
    assert first == [item["item"] for item in by_user["items"][:3]]  # --all ranks as one user does


def test_the_card_says_plainly_when_a_baseline_beats_the_model():
    from ncflow.model_card import model_card
    from ncflow.registry import Entry, Registration

    def card(ease_full_hr: float) -> str:
        metrics = {"hr@10": 0.6, "ndcg@10": 0.33, "full_hr@10": 0.10, "full_ndcg@10": 0.05}
        metrics |= {f"popularity_{k}": v / 2 for k, v in list(metrics.items())}
        metrics |= {"ease_hr@10": 0.59, "ease_ndcg@10": 0.32, "ease_full_hr@10": ease_full_hr,
                    "ease_full_ndcg@10": 0.04, "ease_lambda": 200.0}  # fmt: skip
        entry = Entry(1, Path("v1"), metrics, "t", {"model": "ncf", "dataset": "d", "metric": "hr@10"})
        return model_card(Registration(entry, True, None, None, "first model: champion"), data={}, params={},
                          history=[], training={}, full_metrics=("full_hr@10", "full_ndcg@10"))  # fmt: skip

    beaten = card(0.12)
    assert (
        "**A baseline beats this model: EASE (lambda 200)**, on full_hr@10 0.1200 against 0.1000." in beaten
    )
    assert "| EASE (lambda 200) | 0.5900 | 0.3200 |" in beaten  # sampled, beside the model and popularity
    assert "| EASE (lambda 200) | 0.1200 | 0.0400 |" in beaten  # full ranking
    assert "beats this model" not in card(0.09)


def test_baseline_rows_are_fitted_once_per_processed_folder(folders, tmp_path):
    import shutil

    from models.ease.evaluate import baseline_rows

    data = tmp_path / "data"
    shutil.copytree(folders["ncf"], data)
    rows = baseline_rows(data)
    assert rows["ease_full_ndcg@10"] > rows["popularity_full_ndcg@10"] > 0 and rows["ease_lambda"] in (
        10,
        50,
        200,
    )
    (kept,) = data.glob("baselines-*.json")
    kept.write_text(json.dumps({**rows, "ease_lambda": -1.0}))  # what a later evaluation finds
    assert baseline_rows(data)["ease_lambda"] == -1.0  # read back, not refitted
