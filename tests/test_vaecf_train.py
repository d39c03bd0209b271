"""The VAE-CF trainer end to end on CPUs: 2 gloo ranks through real torchrun, exact resume, the bundle.

The data is planted here, not borrowed: 10 taste clusters of 20 items; a user takes most of their
items from their own cluster and the rest from a popularity-skewed draw over all items. Item
popularity alone therefore ranks a user's cluster poorly, and a model that learns the clusters wins.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from configs import PreprocessConfig
from models.vaecf.bundle import load_bundle, recommend_foldin
from models.vaecf.train import main as train_main
from ncflow.data.preprocess import preprocess

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--device", "cpu", "--hidden", "32", "--latent", "8", "--batch-size", "64", "--lr", "0.01"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    n_users, clusters, per_cluster = 800, 10, 20
    n_items = clusters * per_cluster
    popularity = 1.0 / (np.arange(n_items) + 5.0)
    popularity = rng.permutation(popularity / popularity.sum())
    lines = ["user,item"]
    for u in range(n_users):
        cluster = u % clusters
        own = rng.choice(per_cluster, size=rng.integers(6, 14), replace=False) + cluster * per_cluster
        noise = rng.choice(n_items, size=rng.integers(1, 5), replace=False, p=popularity)
        lines += [f"{u},{1000 + i}" for i in sorted(set(own) | set(noise))]
    raw = tmp_path_factory.mktemp("raw") / "planted.csv"
    raw.write_text("\n".join(lines) + "\n")
    config = PreprocessConfig(protocol="vaecf", min_rating=1.0)  # no rating column: every row a positive
    return preprocess("planted", raw, tmp_path_factory.mktemp("data"), config, device="cpu")


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def ndcg100(ranked: list[int], targets: set[int]) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranked[:100]) if i in targets)
    return dcg / sum(1 / math.log2(r + 2) for r in range(min(100, len(targets))))


def popularity_ndcg(data: Path) -> float:
    """The baseline, computed here from the Parquet files and the definition alone."""
    manifest = json.loads((data / "manifest.json").read_text())
    counts = np.zeros(manifest["counts"]["items"])
    for row in pq.read_table(data / "train.parquet").column("items").to_pylist():
        counts[row] += 1
    order = sorted(range(len(counts)), key=lambda i: -counts[i])
    foldin = pq.read_table(data / "test_foldin.parquet").column("items").to_pylist()
    target = pq.read_table(data / "test_target.parquet").column("items").to_pylist()
    scores = [ndcg100([i for i in order if i not in set(f)], set(t)) for f, t in zip(foldin, target)]
    return float(np.mean(scores))


def run_torchrun(data: Path, out: Path, *flags: str) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "models.vaecf.train", "--data", str(data), "--out", str(out), *SMALL, *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return events(done.stdout)


def test_two_gloo_ranks_beat_popularity(data, tmp_path):
    log = run_torchrun(data, tmp_path / "run", "--epochs", "25")
    start, done = log[0], log[-1]
    assert start["event"] == "start" and start["world_size"] == 2
    assert start["batch_per_rank"] == 32 and start["steps_per_epoch"] == start["train_users"] // 2 // 32
    assert [e["epoch"] for e in log if e["event"] == "epoch"] == list(range(25))
    assert done["event"] == "done"
    baseline = popularity_ndcg(data)
    assert done["test_ndcg@100"] > baseline + 0.15, (done["test_ndcg@100"], baseline)
    assert (tmp_path / "run" / "bundle" / "model.safetensors").is_file()


def run_in_process(data: Path, out: Path, epochs: int, capsys) -> list[dict]:
    assert train_main(["--data", str(data), "--out", str(out), *SMALL, "--epochs", str(epochs)]) == 0
    return events(capsys.readouterr().out)


def same_run(a: Path, b: Path) -> None:
    wa, wb = (
        load_file(str(a / "bundle" / "model.safetensors")),
        load_file(str(b / "bundle" / "model.safetensors")),
    )
    assert wa.keys() == wb.keys()
    for key in wa:
        assert wa[key].equal(wb[key]), key  # bit-exact
    ma = json.loads((a / "bundle" / "metrics.json").read_text())
    mb = json.loads((b / "bundle" / "metrics.json").read_text())
    timing = ("seconds", "train_seconds", "eval_seconds", "users_per_s", "bundle")
    for name in ma:
        if name == "history":
            strip = [
                [{k: v for k, v in h.items() if k not in timing} for h in m["history"]] for m in (ma, mb)
            ]
            assert strip[0] == strip[1]
        elif name not in timing:
            assert ma[name] == mb[name], name


def test_extending_epochs_resumes_exactly(data, tmp_path, capsys):
    run_in_process(data, tmp_path / "whole", 6, capsys)
    run_in_process(data, tmp_path / "parts", 2, capsys)
    log = run_in_process(data, tmp_path / "parts", 6, capsys)  # same --out, more epochs: resumes at 2
    assert log[0] == {**log[0], "event": "resume", "epoch": 2}
    same_run(tmp_path / "whole", tmp_path / "parts")


def test_killed_run_resumes_exactly(data, tmp_path, capsys):
    epochs = 30
    command = [sys.executable, "-m", "models.vaecf.train", "--data", str(data), "--out", str(tmp_path / "killed"),
               *SMALL, "--epochs", str(epochs)]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no handler, no cleanup: a crash, mid-epoch or mid-write
    proc.communicate()
    assert not (tmp_path / "killed" / "bundle").exists(), "finished before the kill: nothing was tested"

    run_in_process(data, tmp_path / "whole", epochs, capsys)
    log = run_in_process(data, tmp_path / "killed", epochs, capsys)
    assert log[0]["event"] == "resume" and 0 < log[0]["epoch"] < epochs
    same_run(tmp_path / "whole", tmp_path / "killed")


def test_changed_config_is_refused(data, tmp_path, capsys):
    run_in_process(data, tmp_path / "run", 1, capsys)
    with pytest.raises(SystemExit, match="another configuration"):
        train_main(
            ["--data", str(data), "--out", str(tmp_path / "run"), *SMALL, "--epochs", "2", "--dropout", "0.3"]
        )


def test_bundle_recommends_for_a_new_user(data, tmp_path, capsys):
    run_in_process(data, tmp_path / "run", 15, capsys)
    bundle = load_bundle(tmp_path / "run" / "bundle")
    cluster = [1000 + 20 * 3 + i for i in range(8)]  # 8 of cluster 3's 20 items (original ids)
    recs = recommend_foldin(bundle, cluster, k=10)
    assert len(recs) == 10 and {"item", "title", "score"} <= recs[0].keys()
    assert not {r["item"] for r in recs} & set(cluster)
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    in_cluster = sum(1060 <= r["item"] < 1080 for r in recs)
    assert in_cluster >= 8, recs  # 12 unseen items of the cluster remain: the top 10 should be theirs
    with pytest.warns(UserWarning, match="2 of 10 item ids are unknown"):
        assert recommend_foldin(bundle, [*cluster, -1, 10**9], k=10) == recs
    with pytest.raises(ValueError, match="none of the 2 item ids is known"):
        recommend_foldin(bundle, [-1, 10**9])
