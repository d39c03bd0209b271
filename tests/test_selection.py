"""Model selection on validation, not test: the NCF validation split, patience, kept best weights (NCF and
VAE-CF), and full-ranking metrics of trained models against a brute-force NumPy computation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from configs import PreprocessConfig
from configs.ncf import NCFTrainParams
from models.ncf.bundle import load_bundle
from models.ncf.evaluate import evaluate_bundle
from models.ncf.selection import stop_reason
from ncflow.data.ncf_split import ncf_split
from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--mf-dim", "8", "--mlp-layers", "32,16", "--dropout", "0.1", "--batch-size", "2048",
         "--lr", "0.005", "--beta1", "0.9", "--beta2", "0.999", "--device", "cpu", "--target-hr", "1.0"]  # fmt: skip


def test_validation_holds_out_the_second_latest_of_users_with_three_items() -> None:
    # user 10: 1 item, user 20: 2 items, user 30: 3 items, user 40: 5 items (one pair rated twice)
    user = np.array([10, 20, 20, 30, 30, 30, 40, 40, 40, 40, 40, 40])
    item = np.array([1, 1, 2, 3, 1, 2, 5, 4, 3, 2, 1, 5])
    time = np.array([5, 1, 2, 9, 7, 8, 1, 2, 3, 4, 5, 6])  # user 40 rates item 5 again, last
    split = ncf_split(np, user, item, time, negatives=3, seed=1, validation=True)
    ids = split.item_ids
    assert split.valid_user.tolist() == [2, 3]  # users 30 and 40 (indices 2, 3): 3 and 5 distinct items
    assert ids[split.valid_item].tolist() == [2, 1]  # second-latest: user 30's item 2, user 40's item 1
    assert ids[split.test_item].tolist() == [1, 2, 3, 5]  # latest of each user
    pairs = set(zip(split.train_user.tolist(), ids[split.train_item].tolist(), strict=True))
    assert pairs == {(1, 1), (2, 1), (3, 4), (3, 3), (3, 2)}  # users 10, 20: all but test in training
    for row, u in enumerate(split.valid_user.tolist()):
        train = {i for uu, i in pairs if uu == u}
        assert not set(ids[split.valid_negatives[row]].tolist()) & train
        valid = ids[split.valid_item[row]]
        assert not set(ids[split.test_negatives[u]].tolist()) & (
            train | {valid}
        )  # validation is seen at test
    plain = ncf_split(np, user, item, time, negatives=3, seed=1)
    assert plain.valid_user is None and np.array_equal(plain.test_item, split.test_item)


def test_patience_stops_after_epochs_without_improvement() -> None:
    history = [{"epoch": e, "valid_hr@10": v} for e, v in enumerate([0.1, 0.3, 0.3, 0.2])]
    assert stop_reason(history[:3], "valid_hr@10", 0.99, patience=2) is None
    assert stop_reason(history, "valid_hr@10", 0.99, patience=2) == "patience"  # a tie (epoch 2) is none
    assert stop_reason(history, "valid_hr@10", 0.99) is None  # patience 0: never
    assert stop_reason(history, "valid_hr@10", 0.3, patience=2) == "target_hr"


@pytest.fixture(scope="module")
def ncf_valid_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ncf-valid")
    raw = write_synthetic("tiny", root / "raw")
    return preprocess(
        "synth-tiny", raw, root, PreprocessConfig(protocol="ncf", validation=True), device="cpu"
    )


def brute_force_full(scores: np.ndarray, seen: list[set], held_out: np.ndarray) -> dict[str, float]:
    """Leave-one-out full ranking by definition: the held-out item's rank among the user's unseen items."""
    ranks = np.array(
        [
            sum(
                1
                for j in range(scores.shape[1])
                if j != t and j not in seen[u] and scores[u, j] >= scores[u, t]
            )
            for u, t in enumerate(held_out)
        ]
    )
    ndcg = np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0.0)
    return {
        "full_hr@10": (ranks < 10).mean(),
        "full_ndcg@10": ndcg.mean(),
        "full_recall@20": (ranks < 20).mean(),
    }


def test_ncf_selects_on_validation_and_scores_test_once(ncf_valid_data: Path, tmp_path: Path) -> None:
    manifest = json.loads((ncf_valid_data / "manifest.json").read_text())
    valid = pq.read_table(ncf_valid_data / "valid.parquet")
    assert manifest["counts"]["valid_users"] == valid.num_rows > 0
    # A learning rate that peaks and falls back (deterministic on CPUs): patience stops the run 2 epochs
    # after its best, so the bundle holds weights other than the last epoch's, and the last epoch's
    # validation scores differ from the best's: a trainer that skipped restore_best() fails below.
    command = [sys.executable, "-m", "models.ncf.train", "--data", str(ncf_valid_data), "--out", str(tmp_path),
               *SMALL, "--lr", "0.02", "--dropout", "0.0", "--epochs", "12", "--patience", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    epochs, summary = [e for e in events if e["event"] == "epoch"], events[-1]
    assert all("valid_hr@10" in e and "hr@10" not in e for e in epochs)  # test is not looked at per epoch
    best = max(epochs, key=lambda e: e["valid_hr@10"])  # the first of equals
    assert summary["weights_epoch"] == best["epoch"] and summary["valid_hr@10"] == best["valid_hr@10"]
    assert summary["stopped"] == "patience" and epochs[-1]["epoch"] - best["epoch"] == 2
    last = (epochs[-1]["valid_hr@10"], epochs[-1]["valid_ndcg@10"])
    assert last != (best["valid_hr@10"], best["valid_ndcg@10"])  # the last weights would score otherwise
    assert "kept the weights of epoch" in done.stderr

    scores = evaluate_bundle(Path(summary["bundle"]), ncf_valid_data)  # the kept weights, scored anew
    assert scores["hr@10"] == summary["hr@10"] and scores["valid_hr@10"] == summary["valid_hr@10"]
    assert scores["valid_ndcg@10"] == best["valid_ndcg@10"]
    assert scores["full_hr@10"] > scores["popularity_full_hr@10"] > 0

    # The champion rule compares validation HR@10: a newcomer better on test but worse on validation stays out.
    from ncflow.specs import spec
    from tasks.register import register_model

    params = NCFTrainParams.for_dataset("synth-tiny", validation=True, patience=2)
    metric = spec("ncf").selection_metric(params)
    assert metric == "valid_hr@10" and params.preprocess_config().validation
    registry = tmp_path / "registry"
    first = register_model.fn("ncf", "synth-tiny", summary["bundle"], str(ncf_valid_data), scores, summary,
                              {}, str(registry), metric=metric)  # fmt: skip
    worse = scores | {"valid_hr@10": scores["valid_hr@10"] - 0.01, "hr@10": scores["hr@10"] + 0.01}
    second = register_model.fn("ncf", "synth-tiny", summary["bundle"], str(ncf_valid_data), worse, summary,
                               {}, str(registry), metric=metric)  # fmt: skip
    assert first["promoted"] and not second["promoted"] and "valid_hr@10" in second["reason"]
    card = (Path(second["path"]) / "MODEL_CARD.md").read_text()
    assert "| **valid_hr@10** (decides) |" in card and "| item popularity |" in card

    bundle = load_bundle(Path(summary["bundle"]))
    n_users, n_items = bundle.model.config.n_users, bundle.model.config.n_items
    with torch.no_grad():  # the model's plain forward on every pair, not the scorer's shortcut
        logits = bundle.model(torch.arange(n_users), torch.arange(n_items).expand(n_users, n_items)).numpy()
    seen = [set(row) for row in bundle.seen.to_pylist()]
    for u, i in zip(valid.column("user").to_pylist(), valid.column("item").to_pylist(), strict=True):
        seen[u].add(i)  # at test time the validation item is seen
    held_out = pq.read_table(ncf_valid_data / "test.parquet").column("item").to_numpy()
    for name, value in brute_force_full(logits, seen, held_out).items():
        assert scores[name] == pytest.approx(value, abs=1.5 / n_users), name  # one near-tie may flip


def test_vaecf_keeps_its_best_validation_epoch(tmp_path: Path) -> None:
    from models.vaecf.bundle import load_bundle as vae_load
    from models.vaecf.evaluate import evaluate_bundle as vae_evaluate

    raw = write_synthetic("tiny", tmp_path / "raw")
    data = preprocess("synth-tiny", raw, tmp_path, PreprocessConfig(protocol="vaecf"), device="cpu")
    out = tmp_path / "run"
    flags = ["--device", "cpu", "--hidden", "32", "--latent", "8", "--batch-size", "64", "--lr", "0.03"]
    command = [sys.executable, "-m", "models.vaecf.train", "--data", str(data), "--out", str(out), *flags]
    done = subprocess.run([*command, "--epochs", "4"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    epochs, summary = [e for e in events if e["event"] == "epoch"], events[-1]
    best = max(epochs, key=lambda e: e["ndcg@100"])
    # These settings peak before the last epoch (deterministic on CPUs), whose validation NDCG@100
    # differs: a bundle of the last weights could not pass the re-scoring below.
    assert best["epoch"] < epochs[-1]["epoch"] and epochs[-1]["ndcg@100"] != best["ndcg@100"]
    assert (
        summary["weights_epoch"] == best["epoch"]
        and f"kept the weights of epoch {best['epoch']}" in done.stderr
    )
    result = vae_evaluate(Path(summary["bundle"]), data)
    assert result["valid"]["ndcg@100"] == best["ndcg@100"]  # the bundle, re-scored: the best epoch's weights
    assert result["mult_vae"]["ndcg@100"] == summary["test_ndcg@100"]
    # full ranking by definition: fold-in items seen, target items held out
    foldin = pq.read_table(data / "test_foldin.parquet").column("items").to_pylist()
    target = pq.read_table(data / "test_target.parquet").column("items").to_pylist()
    model = vae_load(Path(summary["bundle"])).model
    hr = ndcg = recall = 0.0
    for f, t in zip(foldin, target, strict=True):
        with torch.no_grad():
            idx = torch.tensor(f)
            w = model.input_weights(torch.zeros_like(idx), torch.tensor([len(f)]))
            mu, _ = model.encode(idx, torch.zeros(1, dtype=torch.int64), w)
            s = model.decode(mu)[0].numpy()
        ranks = [sum(1 for j in range(len(s)) if j != i and j not in f and s[j] >= s[i]) for i in t]
        hr += any(r < 10 for r in ranks)
        ndcg += sum(1 / math.log2(r + 2) for r in ranks if r < 10) / sum(
            1 / math.log2(r + 2) for r in range(min(10, len(t)))
        )
        recall += sum(r < 20 for r in ranks) / min(20, len(t))
    n = len(foldin)
    assert n == result["users"] > 0
    got = result["mult_vae"]
    assert got["full_hr@10"] == pytest.approx(hr / n, abs=1e-6)
    assert got["full_ndcg@10"] == pytest.approx(ndcg / n, abs=1e-6)
    assert got["full_recall@20"] == pytest.approx(recall / n, abs=1e-6)
    assert "full_hr@10" in result["popularity"]
