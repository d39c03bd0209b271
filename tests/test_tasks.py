"""Each task of the ncf-train flow through `.fn(...)`: no Prefect server, tiny CPU data and model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from configs.ncf import NCFTrainParams
from flows.ncf_train import check_gpus
from ncflow import registry
from ncflow.errors import NcflowError
from ncflow.launch import TrainerFailed, config_flags, run_trainer, torchrun_command
from tasks.data import (
    fetch_raw,
    preprocess_cache_key,
    preprocess_data,
    processed_missing,
    raw_cache_key,
    raw_missing,
)
from tasks.evaluate import EvaluationMismatch, evaluate_model
from tasks.register import register_model
from tasks.train import train_model

PARAMS = NCFTrainParams.for_dataset("synth-tiny", epochs=2, cpu_processes=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = fetch_raw.fn("synth-tiny", str(root))
    processed = preprocess_data.fn("synth-tiny", raw, str(root), PARAMS.preprocess_config())
    return root, raw, processed


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """Training interrupted after its first epoch, then run again as a retry would: it resumes."""
    _, _, processed = data
    out = tmp_path_factory.mktemp("run") / "r1"
    command = torchrun_command("ncf", Path(processed), out, PARAMS.train_config(), 1)

    def crash_after_first_epoch(event):
        if event.get("event") == "epoch":
            raise KeyboardInterrupt("simulated failure")

    with pytest.raises(KeyboardInterrupt):
        run_trainer(command, on_event=crash_after_first_epoch)
    assert (out / "checkpoint.pt").is_file() and not (out / "bundle").exists()
    summary = train_model.fn("ncf", processed, str(out), PARAMS.train_config(), 1, "ncf-synth-tiny")
    return summary


def test_params_take_dataset_defaults_and_refuse_bad_values():
    p = NCFTrainParams.for_dataset("synth-tiny")
    assert (p.mf_dim, p.mlp_layers, p.batch_size, p.beta1) == (16, (64, 32, 16), 2048, 0.9)
    assert NCFTrainParams.for_dataset("ml-20m").batch_size == 2**20
    assert NCFTrainParams.for_dataset("synth-tiny", epochs=7, lr=None).epochs == 7  # None: not given
    with pytest.raises(NcflowError, match="unknown dataset 'nope'"):
        NCFTrainParams.for_dataset("nope")
    with pytest.raises(NcflowError, match="epochs: Input should be greater than or equal to 1"):
        NCFTrainParams.for_dataset("synth-tiny", epochs=0)
    with pytest.raises(NcflowError, match="colour"):
        NCFTrainParams.for_dataset("synth-tiny", colour="red")
    with pytest.raises(NcflowError, match="lr"):
        NCFTrainParams.for_dataset("synth-tiny", lr="fast")


def test_more_gpus_than_present_fails_fast():
    import torch

    with pytest.raises(NcflowError, match=f"gpus={torch.cuda.device_count() + 1} asked for"):
        check_gpus(torch.cuda.device_count() + 1)
    check_gpus(0)


def test_config_flags_match_the_trainer():
    flags = config_flags({"batch_size": 8, "compile": False, "mlp_layers": (4, 2), "lr": 0.5})
    assert flags == ["--batch-size", "8", "--no-compile", "--mlp-layers", "4,2", "--lr", "0.5"]


def test_fetch_and_preprocess_return_paths_and_cache_on_purpose(data, tmp_path):
    root, raw, processed = data
    assert Path(raw["path"], "ratings.csv").is_file() and len(raw["md5"]) == 32
    manifest = json.loads(Path(processed, "manifest.json").read_text())
    assert manifest["source"]["md5"] == raw["md5"] and manifest["counts"]["users"] == 500

    params = {"dataset": "synth-tiny", "data_dir": str(root), "source": None}
    assert raw_cache_key(None, params) == raw_cache_key(None, dict(params))
    assert raw_cache_key(None, params) != raw_cache_key(None, {**params, "data_dir": str(tmp_path)})
    pre = {"dataset": "synth-tiny", "raw": raw, "data_dir": str(root), "config": PARAMS.preprocess_config()}
    key = preprocess_cache_key(None, pre)
    other = NCFTrainParams.for_dataset("synth-tiny", test_negatives=50).preprocess_config()
    assert preprocess_cache_key(None, {**pre, "config": other}) != key
    assert preprocess_cache_key(None, {**pre, "raw": {**raw, "md5": "0" * 32}}) != key
    # a deleted output makes the flow refresh the cache instead of returning a dangling path
    assert not raw_missing("synth-tiny", str(root)) and not processed_missing(
        "synth-tiny", raw, str(root), pre["config"]
    )
    moved = Path(processed).with_name("moved")
    shutil.move(processed, moved)
    try:
        assert processed_missing("synth-tiny", raw, str(root), pre["config"])
        assert preprocess_cache_key(None, pre) == key  # same key: the refreshed run overwrites the record
    finally:
        shutil.move(moved, processed)


def test_training_resumes_and_reports_every_epoch(trained):
    assert trained["epochs"] == 2 and [h["epoch"] for h in trained["history"]] == [0, 1]
    assert Path(trained["bundle"], "model.safetensors").is_file()
    assert trained["wall_seconds"] > trained["train_seconds"] > 0
    assert trained["hr@10"] == trained["history"][-1]["hr@10"]


def test_trainer_failure_carries_its_stderr(tmp_path):
    with pytest.raises(TrainerFailed, match="not a processed dataset") as err:
        train_model.fn("ncf", str(tmp_path / "nothing"), str(tmp_path / "out"), PARAMS.train_config(), 1, "k")
    assert err.value.returncode != 0 and not err.value.retryable


def test_evaluation_reproduces_the_trainer(data, trained):
    _, _, processed = data
    scores = evaluate_model.fn("ncf", trained["bundle"], processed, "cpu", expected=trained)
    assert scores["hr@10"] == trained["hr@10"]
    with pytest.raises(EvaluationMismatch):
        evaluate_model.fn("ncf", trained["bundle"], processed, "cpu", expected={"hr@10": 0.0})


def test_registration_promotes_only_a_better_model(data, trained, tmp_path):
    _, _, processed = data
    scores = {"hr@10": trained["hr@10"], "ndcg@10": trained["ndcg@10"]}
    args = ("ncf", "synth-tiny", trained["bundle"], processed)
    first = register_model.fn(*args, scores, trained, PARAMS.model_dump(mode="json"), str(tmp_path))
    assert first["promoted"] and first["version"] == 1 and first["champion"] == first["path"]
    card = Path(first["path"], registry.CARD).read_text()
    assert "Learning curve" in card and "| 1 |" in card and "first model" in card
    worse = {**scores, "hr@10": scores["hr@10"] - 0.1}
    second = register_model.fn(*args, worse, trained, PARAMS.model_dump(mode="json"), str(tmp_path))
    assert not second["promoted"] and second["version"] == 2 and second["champion"] == first["path"]
