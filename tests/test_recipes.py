"""The per-dataset recipes of ml-100k and synth-ml1m (configs/<model>/<dataset>.yaml) load, the ones the
issue-18 sweeps chose name the sweep, and all of them train: each one's trainer settings, as a flow
hands them over, on a tiny synthetic set of the split the recipe asks for (one epoch; the batch sizes
are the recipes' own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic
from ncflow.launch import run_trainer, torchrun_command
from ncflow.specs import spec

RECIPES = [(model, dataset) for model in ("ncf", "vae-cf", "ease") for dataset in ("ml-100k", "synth-ml1m")]
SWEPT = {("ncf", "ml-100k"), ("vae-cf", "ml-100k"), ("vae-cf", "synth-ml1m")}  # EASE picks lambda itself


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recipes")
    return root, write_synthetic("tiny", root / "raw")


@pytest.mark.parametrize("model, dataset", RECIPES)
def test_sweep_chosen_recipes_load_and_train(model, dataset, raw, tmp_path):
    root, source = raw
    what = spec(model)
    recipe = what.params.CONFIG_DIR / f"{dataset}.yaml"
    if (model, dataset) in SWEPT:
        # the comment naming the sweep that chose it: its command and its space file, which exists
        sweep = re.search(r"(ncflow sweep|bench/sweep_gpu\.py) .*--space (\S+)", recipe.read_text())
        assert sweep and (Path(__file__).parents[1] / sweep.group(2)).is_file()
    params = what.params.for_dataset(dataset)  # the YAML, validated as a flow would
    config = params.train_config() | ({"epochs": 1} if "epochs" in params.train_config() else {})
    data = preprocess("synth-tiny", source, root, params.preprocess_config(), device="cpu")
    run = run_trainer(torchrun_command(what.package, data, tmp_path, config, 1))
    assert Path(run.done["bundle"]).is_dir()
    assert run.done["epochs"] == (len(params.lambdas) if model == "ease" else 1)
