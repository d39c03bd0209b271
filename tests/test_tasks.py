"""Each task of the ncf-train and vae-cf-train flows through `.fn(...)`: no Prefect server, tiny CPU
data and models. The same tasks serve both models (ncflow.specs says what differs)."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from configs.ncf import NCFTrainParams
from configs.vaecf import VAECFTrainParams
from flows.ncf_train import check_gpus
from ncflow import registry
from ncflow.cli import main as cli
from ncflow.errors import NcflowError
from ncflow.launch import TrainerFailed, config_flags, run_trainer, torchrun_command
from ncflow.specs import SPECS
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

    first_try: list[dict] = []

    def crash_after_first_epoch(event):  # checkpoints are written in the background: wait for one
        first_try.append(event)
        if event.get("event") == "checkpoint":
            raise KeyboardInterrupt("simulated failure")

    with pytest.raises(KeyboardInterrupt):
        run_trainer(command, on_event=crash_after_first_epoch)
    assert (out / "checkpoint.pt").is_file() and not (out / "bundle").exists()
    summary = train_model.fn("ncf", processed, str(out), PARAMS.train_config(), 1, "ncf-synth-tiny")
    summary["first_try"] = [e for e in first_try if e["event"] == "epoch"]
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
    # The retry continued after the checkpointed epoch 0 (a trainer that started over would not say
    # so), and epoch 0's record is the first try's, read back from the checkpoint.
    assert trained["resumed_at_epoch"] == 1
    (epoch0,) = trained["first_try"]
    assert trained["history"][0] == {k: v for k, v in epoch0.items() if k not in ("event", "elapsed_s")}
    assert Path(trained["bundle"], "model.safetensors").is_file()
    # train_seconds covers both tries' epochs; wall_seconds only this try, which ran the last epoch
    assert trained["train_seconds"] == pytest.approx(sum(h["train_seconds"] for h in trained["history"]))
    assert trained["wall_seconds"] > trained["history"][-1]["train_seconds"] > 0
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
    assert (
        card.count("](data:image/svg+xml;base64,") == 1
    )  # the curve as a picture (tests/test_learning_curve.py)
    worse = {**scores, "hr@10": scores["hr@10"] - 0.1}
    second = register_model.fn(*args, worse, trained, PARAMS.model_dump(mode="json"), str(tmp_path))
    assert not second["promoted"] and second["version"] == 2 and second["champion"] == first["path"]
    card = Path(second["path"], registry.CARD).read_text()
    assert card.splitlines()[2] == (
        f"**Not promoted: the champion stays v1.** Why: hr@10 {worse['hr@10']:.4f} does not beat champion"
        f" v1's {scores['hr@10']:.4f}."
    )
    assert f"| **hr@10** (decides) | {worse['hr@10']:.4f} | {scores['hr@10']:.4f} | -0.1000 |" in card


def test_ncf_recommend_from_the_registry_still_works(data, trained, tmp_path, capsys):
    _, _, processed = data
    scores = {"hr@10": trained["hr@10"], "ndcg@10": trained["ndcg@10"]}
    args = ("ncf", "synth-tiny", trained["bundle"], processed)
    register_model.fn(*args, scores, trained, PARAMS.model_dump(mode="json"), str(tmp_path))
    user = pq.read_table(Path(trained["bundle"], "users.parquet")).column("id")[0].as_py()
    assert cli(["recommend", "--dataset", "synth-tiny", "--user", str(user), "-k", "4", "--registry-dir", str(tmp_path), "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["user"] == user and len(out["items"]) == 4
    assert cli(["recommend", "--user", str(user), "--registry-dir", str(tmp_path)]) == 0  # the only dataset
    assert (
        cli(["recommend", "--dataset", "synth-tiny", "--items", "1,2", "--registry-dir", str(tmp_path)]) == 2
    )


# --- vae-cf-train: the same tasks, the other model -------------------------------------------------

VAE = VAECFTrainParams.for_dataset("synth-tiny", epochs=3)


def test_every_flow_takes_every_parameter_of_its_model():
    for model in SPECS.values():
        flow_parameters = set(inspect.signature(model.flow_function().fn).parameters)
        assert flow_parameters == set(model.params.model_fields), model.name


def test_vaecf_params_take_dataset_defaults_and_refuse_bad_values():
    nvidia = VAECFTrainParams.for_dataset("ml-20m")
    assert (nvidia.batch_size, nvidia.lr, nvidia.beta1, nvidia.beta2, nvidia.anneal) == (
        24_576,
        0.004,
        0.9,
        0.9,
        "nvidia",
    )
    assert (nvidia.epochs, nvidia.hidden, nvidia.latent, nvidia.dropout) == (200, 600, 200, 0.5)
    tiny = VAECFTrainParams.for_dataset("synth-tiny")
    assert (tiny.hidden, tiny.latent, tiny.batch_size) == (64, 16, 128)
    assert VAE.train_config()["epochs"] == 3 and VAE.train_config()["device"] == "cpu"
    assert VAE.preprocess_config().protocol == "vaecf"
    with pytest.raises(NcflowError, match="bad vae-cf-train parameter: anneal"):
        VAECFTrainParams.for_dataset("synth-tiny", anneal="bogus")
    with pytest.raises(NcflowError, match="epochs: Input should be greater than or equal to 1"):
        VAECFTrainParams.for_dataset("synth-tiny", epochs=0)
    with pytest.raises(NcflowError, match="negatives"):  # an NCF parameter is not a VAE-CF one
        VAECFTrainParams.for_dataset("synth-tiny", negatives=4)
    with pytest.raises(NcflowError, match="unknown dataset 'nope'"):
        VAECFTrainParams.for_dataset("nope")


@pytest.fixture(scope="module")
def vae_data(data):
    root, raw, _ = data
    return preprocess_data.fn("synth-tiny", raw, str(root), VAE.preprocess_config())


@pytest.fixture(scope="module")
def vae_trained(vae_data, tmp_path_factory):
    """As for NCF: interrupted after its first epoch, then resumed by the task as a retry would."""
    out = tmp_path_factory.mktemp("vae-run") / "r1"
    command = torchrun_command("vaecf", Path(vae_data), out, VAE.train_config(), 1)

    def crash_after_first_epoch(event):
        if event.get("event") == "epoch":
            raise KeyboardInterrupt("simulated failure")

    with pytest.raises(KeyboardInterrupt):
        run_trainer(command, on_event=crash_after_first_epoch)
    assert (out / "checkpoint.pt").is_file() and not (out / "bundle").exists()
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["next_epoch"]
    return {
        **train_model.fn("vae-cf", vae_data, str(out), VAE.train_config(), 1, "vae-cf-synth-tiny"),
        "saved": saved,
    }


def test_vaecf_preprocessing_is_its_own_cached_output(data, vae_data):
    root, raw, processed = data
    assert (
        vae_data != processed
        and json.loads(Path(vae_data, "manifest.json").read_text())["protocol"] == "vaecf"
    )
    pre = {"dataset": "synth-tiny", "raw": raw, "data_dir": str(root), "config": PARAMS.preprocess_config()}
    assert preprocess_cache_key(None, {**pre, "config": VAE.preprocess_config()}) != preprocess_cache_key(
        None, pre
    )
    assert not processed_missing("synth-tiny", raw, str(root), VAE.preprocess_config())


def test_vaecf_training_resumes_and_reports_every_epoch(vae_trained):
    assert vae_trained["epochs"] == 3 and [h["epoch"] for h in vae_trained["history"]] == [0, 1, 2]
    assert vae_trained["saved"] >= 1 and vae_trained["resumed_at_epoch"] == vae_trained["saved"]
    assert Path(vae_trained["bundle"], "model.safetensors").is_file()
    assert vae_trained["ndcg@100"] == vae_trained["history"][-1]["ndcg@100"]  # validation, last epoch


def test_vaecf_evaluation_reproduces_the_trainer(vae_data, vae_trained):
    scores = evaluate_model.fn("vae-cf", vae_trained["bundle"], vae_data, "cpu", expected=vae_trained)
    assert scores["ndcg@100"] == vae_trained["test_ndcg@100"]  # the test split, scored independently
    assert {"recall@20", "recall@50", "popularity_ndcg@100"} <= set(scores)
    with pytest.raises(EvaluationMismatch):
        evaluate_model.fn("vae-cf", vae_trained["bundle"], vae_data, "cpu", expected={"test_ndcg@100": 0.0})


def test_vaecf_registration_uses_ndcg100_and_recommend_folds_in(vae_data, vae_trained, tmp_path, capsys):
    scores = evaluate_model.fn("vae-cf", vae_trained["bundle"], vae_data, "cpu")
    args = ("vae-cf", "synth-tiny", vae_trained["bundle"], vae_data)
    params = VAE.model_dump(mode="json")
    first = register_model.fn(*args, scores, vae_trained, params, str(tmp_path))
    assert first["promoted"] and first["version"] == 1
    record = json.loads(Path(first["path"], registry.RECORD).read_text())
    assert record["metric"] == "ndcg@100" and record["model"] == "vae-cf"
    card = Path(first["path"], registry.CARD).read_text()
    assert "| NDCG@100 | RECALL@20 | RECALL@50 | users/s |" in card and "| item popularity |" in card
    assert "| EASE (lambda " in card  # fitted on the same training data (models/ease/evaluate.py)
    worse = {**scores, "ndcg@100": scores["ndcg@100"] - 0.1, "recall@20": 1.0}  # better recall does not count
    second = register_model.fn(*args, worse, vae_trained, params, str(tmp_path))
    assert not second["promoted"] and second["version"] == 2 and second["champion"] == first["path"]
    assert "ndcg@100" in second["reason"]

    liked = pq.read_table(Path(vae_trained["bundle"], "items.parquet")).column("id").to_pylist()[:3]
    items = ",".join(str(i) for i in liked)
    assert cli(["recommend", "--model", "vae-cf", "--items", items, "-k", "5", "--registry-dir", str(tmp_path), "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == first["path"] and len(out["items"]) == 5
    assert not {item["item"] for item in out["items"]} & set(liked)  # liked items are never recommended
    assert (
        cli(["recommend", "--model", "vae-cf", "--items", "999999999", "--registry-dir", str(tmp_path)]) == 2
    )
    assert cli(["recommend", "--model", "vae-cf", "--user", "1", "--registry-dir", str(tmp_path)]) == 2
