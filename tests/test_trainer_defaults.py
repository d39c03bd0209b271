"""Standalone trainers take the flows' per-dataset defaults (configs/<model>/<dataset>.yaml), and for a
dataset without a preset Adam sized to the data (a batch of at least 50 steps per epoch for NCF, 20
for Mult-VAE, with its lr and betas), saying so on stderr; NCF warns of an epoch of fewer than 50."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from configs import PreprocessConfig
from models.common.defaults import MIN_STEPS, SIZE_RULES, VAECF_MIN_STEPS, largest_batch, resolve_defaults
from models.ncf.train import TrainConfig as NCFConfig
from models.ncf.train import main as ncf_main
from models.vaecf.train import TrainConfig as VAEConfig
from models.vaecf.train import main as vae_main
from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[1]


def ncf_units(manifest: dict, cfg: dict) -> int:
    return manifest["counts"]["train_positives"] * (1 + cfg["negatives"])


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """synth-tiny for both protocols, and copies renamed to a dataset that has no preset."""
    root = tmp_path_factory.mktemp("defaults")
    raw = write_synthetic("tiny", root / "raw")
    out = {}
    for protocol in ("ncf", "vaecf"):
        known = preprocess("synth-tiny", raw, root, PreprocessConfig(protocol=protocol), device="cpu")
        unknown = root / f"custom-{protocol}"
        shutil.copytree(known, unknown)
        manifest = json.loads((unknown / "manifest.json").read_text())
        (unknown / "manifest.json").write_text(json.dumps({**manifest, "dataset": "my-ratings"}))
        out[protocol], out[f"custom-{protocol}"] = known, unknown
    return out


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_a_known_dataset_takes_its_preset_and_flags_win(datasets) -> None:
    preset = yaml.safe_load((REPO / "configs" / "ncf" / "synth-tiny.yaml").read_text())
    rest, note = resolve_defaults(NCFConfig, "ncf", datasets["ncf"], {"lr": 0.01}, ncf_units)
    assert "lr" not in rest and rest["batch_size"] == preset["batch_size"] != NCFConfig.batch_size
    assert rest["mlp_layers"] == tuple(preset["mlp_layers"]) and rest["negatives"] == NCFConfig.negatives
    assert "configs/ncf/synth-tiny.yaml" in note and "lr=" not in note


def test_largest_batch_gives_enough_steps_and_never_exceeds_the_default() -> None:
    for units in (50, 1000, 97_499, 10**7):
        batch = largest_batch(units, 2**20)
        assert units // batch >= MIN_STEPS and (batch * 2 > units // MIN_STEPS or batch == 2**20)
    assert largest_batch(10**12, 2**20) == 2**20


def test_ncf_standalone_on_an_unknown_dataset_picks_and_logs_its_batch(datasets, tmp_path, capsys) -> None:
    argv = ["--data", str(datasets["custom-ncf"]), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert ncf_main([*argv, "--device", "cpu", "--mlp-layers", "16,8"]) == 0
    out, err = capsys.readouterr()
    start = next(e for e in events(out) if e["event"] == "start")
    assert start["steps_per_epoch"] >= MIN_STEPS, start
    assert start["config"]["batch_size"] < NCFConfig.batch_size
    assert f"batch_size={start['config']['batch_size']}" in err and "my-ratings" in err
    assert start["config"]["lr"] == SIZE_RULES["ncf"].lr(start["config"]["batch_size"])
    assert "warning:" not in err


def test_ncf_warns_of_an_epoch_of_few_steps_for_a_batch_it_was_given(datasets, tmp_path, capsys) -> None:
    argv = ["--data", str(datasets["ncf"]), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert ncf_main([*argv, "--device", "cpu", "--mlp-layers", "16,8", "--batch-size", "32768"]) == 0
    out, err = capsys.readouterr()
    steps = next(e for e in events(out) if e["event"] == "start")["steps_per_epoch"]
    assert steps < MIN_STEPS and f"warning: an epoch is {steps} step(s) of 32,768 samples" in err


def test_the_lr_rule_reproduces_the_presets_it_was_drawn_from() -> None:
    """The fourth-root rule (models/common/defaults.py) through ml-100k's (2048, 0.001) lands within
    20% of ml-1m's and ml-20m's tuned learning rates; Mult-VAE's through ml-1m's (500, 0.001)."""
    for model, dataset in (("ncf", "ml-100k"), ("ncf", "ml-1m"), ("ncf", "ml-20m"), ("vaecf", "ml-1m")):
        preset = yaml.safe_load((REPO / "configs" / model / f"{dataset}.yaml").read_text())
        rule = SIZE_RULES[model].lr(preset["batch_size"])
        assert abs(rule / preset["lr"] - 1) <= 0.2, (model, dataset, rule, preset["lr"])


def test_vaecf_standalone_takes_the_synth_tiny_preset(datasets, tmp_path, capsys) -> None:
    preset = yaml.safe_load((REPO / "configs" / "vaecf" / "synth-tiny.yaml").read_text())
    argv = ["--data", str(datasets["vaecf"]), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert vae_main([*argv, "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    config = next(e for e in events(out) if e["event"] == "start")["config"]
    assert config["batch_size"] == preset["batch_size"] and config["hidden"] == preset["hidden"]
    assert config["epochs"] == 1 and "configs/vaecf/synth-tiny.yaml" in err


def test_vaecf_unknown_dataset_batch_gives_enough_steps(datasets) -> None:
    rest, note = resolve_defaults(
        VAEConfig, "vaecf", datasets["custom-vaecf"], {}, lambda m, cfg: m["counts"]["train_users"]
    )
    users = json.loads((datasets["custom-vaecf"] / "manifest.json").read_text())["counts"]["train_users"]
    assert users // rest["batch_size"] >= VAECF_MIN_STEPS and f"batch_size={rest['batch_size']}" in note
    assert rest["lr"] == SIZE_RULES["vaecf"].lr(rest["batch_size"]) and (rest["beta1"], rest["beta2"]) == (
        0.9,
        0.999,
    )
