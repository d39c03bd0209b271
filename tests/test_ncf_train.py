"""The NCF trainer as users launch it: real torchrun processes over gloo, on a synthetic dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from configs import PreprocessConfig
from models.ncf.bundle import load_bundle, recommend
from models.ncf.evaluate import evaluate_bundle
from models.ncf.metrics import hit_ndcg
from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--mf-dim", "16", "--mlp-layers", "64,32,16", "--dropout", "0.1", "--batch-size", "2048",
         "--lr", "0.005", "--beta1", "0.9", "--beta2", "0.999", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ncf-data")
    raw = write_synthetic("tiny", root / "raw")
    return preprocess("synth-tiny", raw, root, PreprocessConfig(protocol="ncf"), device="cpu")


def trainer_command(data: Path, out: Path, procs: int, *flags: str) -> list[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    return [*launch, "-m", "models.ncf.train", "--data", str(data), "--out", str(out), *SMALL, *flags]


def run(command: list[str], timeout: float = 300) -> list[dict]:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def popularity_hr(data: Path) -> float:
    """HR@10 of ranking candidates by their training popularity: the baseline to beat clearly."""
    train = pq.read_table(data / "train.parquet").column("item").to_numpy()
    test = pq.read_table(data / "test.parquet")
    k = test.schema.field("negatives").type.list_size
    negatives = test.column("negatives").combine_chunks().flatten().to_numpy().reshape(-1, k)
    candidates = torch.from_numpy(np.concatenate([test.column("item").to_numpy()[:, None], negatives], 1))
    counts = torch.from_numpy(np.bincount(train, minlength=int(candidates.max()) + 1)).float()
    hits, _ = hit_ndcg(counts[candidates.long()], candidates)
    return hits.mean().item()


def test_two_processes_learn_far_above_popularity(data_dir: Path, tmp_path: Path) -> None:
    events = run(trainer_command(data_dir, tmp_path, 2, "--epochs", "8"))
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(8))
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    done = events[-1]
    baseline = popularity_hr(data_dir)
    print(f"NeuMF HR@10 {done['hr@10']:.3f} vs popularity {baseline:.3f}")
    assert done["hr@10"] > baseline + 0.15

    # The bundle stands alone: evaluated independently it gives the trainer's last figures exactly.
    bundle = Path(done["bundle"])
    assert evaluate_bundle(bundle, data_dir)["hr@10"] == done["hr@10"]
    loaded = load_bundle(bundle)
    user_id = next(iter(loaded.user_index))
    top = recommend(loaded, user_id, k=5)
    seen = {int(loaded.item_ids[i]) for i in loaded.seen[loaded.user_index[user_id]].values.to_pylist()}
    assert len(top) == 5 and not seen & {r["item"] for r in top}


def test_resume_after_kill_equals_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    flags = ("--epochs", "5", "--target-hr", "1.0")
    whole = run(trainer_command(data_dir, tmp_path / "whole", 2, *flags))

    # Kill the whole process tree once a checkpoint after epoch 1 is on disk. Checkpoints are written in
    # the background while the next epoch trains; each complete one is reported by a "checkpoint" event.
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        trainer_command(data_dir, out, 2, *flags), cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "checkpoint" and event["epoch"] >= 1:
                break
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "bundle").exists()
    resumed = run(trainer_command(data_dir, out, 2, *flags))
    assert resumed[0] == {**resumed[0], "event": "resume"} and resumed[0]["epoch"] >= 2

    a = load_file(str(tmp_path / "whole" / "bundle" / "model.safetensors"))
    b = load_file(str(out / "bundle" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole[-1]["hr@10"] == resumed[-1]["hr@10"] and whole[-1]["loss"] == resumed[-1]["loss"]


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_precisions_that_apply_on_cpu_are_accepted(data_dir: Path, tmp_path: Path, precision: str) -> None:
    events = run(trainer_command(data_dir, tmp_path, 1, "--epochs", "1", "--precision", precision))
    assert events[-1]["event"] == "done" and 0 <= events[-1]["hr@10"] <= 1


def test_fp16_on_cpu_is_refused_with_a_clear_message(data_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "models.ncf.train", "--data", str(data_dir), "--out", str(tmp_path),
               *SMALL, "--precision", "fp16"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "fp16 needs a CUDA GPU" in done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--epochs", "0"], "epochs must be >= 1"), (["--precision", "fp8"], "precision must be")],
)
def test_impossible_settings_are_refused(
    data_dir: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    command = [
        sys.executable,
        "-m",
        "models.ncf.train",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path),
        *flags,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "models.ncf.train",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "not a processed dataset" in done.stderr


def test_rates_read_at_gpu_and_cpu_scale() -> None:
    from models.common.events import rate

    assert rate(179.8e6, "samples") == "179.8M samples/s"
    assert rate(20_407, "samples") == "20.4k samples/s"
    assert rate(12, "users") == "12 users/s"
