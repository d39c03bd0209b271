"""The `best` alias across model families (ncflow/best.py) through the registration task: it moves only to
a strictly better model, from whichever family, decided on validation on the NCF split; models trained
on the VAE-CF split never compete; a best on other data is rescored on the newcomer's test items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from configs import PreprocessConfig
from ncflow import best, registry
from ncflow.batch.locate import locate_job
from ncflow.data.preprocess import preprocess
from ncflow.data.synth import write_synthetic
from ncflow.errors import NcflowError
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
    root: Path, model: str, data_dir: str, valid: float, test: float, metric: str, hr: float | None = None
):
    bundle = root / "bundles" / f"{model}-{valid}-{test}"
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "weights").write_text("stand-in: registration copies whatever the bundle holds")
    metrics = {"full_ndcg@10": test, "full_hr@10": 2 * test, "hr@10": 0.5, "ndcg@100": test}
    if "valid" in metric:  # data with a validation split: every model reports its validation scores
        metrics |= {"valid_full_ndcg@10": valid, "valid_hr@10": valid if hr is None else hr}
    return register_model.fn(model, "synth-tiny", str(bundle), data_dir, metrics, {"epochs": 1}, {},
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


def test_a_best_on_other_data_is_rescored_on_the_newcomers_test_items(data, tmp_path):
    root = tmp_path / "registry"
    register(tmp_path, "ease", data["ncf-plain"], 0.0, 0.20, "full_ndcg@10")  # no validation split
    bundle = root / "ease" / "synth-tiny" / "v1"
    entry = registry.read_entry(bundle)
    asked = []

    def rescore(model: str, path: Path) -> dict:
        asked.append((model, path))
        return {"full_ndcg@10": 0.25, "valid_full_ndcg@10": 0.99}  # its validation items may be its training

    newcomer = registry.read_entry(
        Path(register(tmp_path, "ncf", data["ncf"], 0.5, 0.22, "valid_hr@10")["path"])
    )
    assert best.read_best(root, "synth-tiny")["model"] == "ease"  # without rescore: kept, it cannot be scored
    decision = best.consider(root, "synth-tiny", "ncf", newcomer, "ncf", rescore=rescore)
    assert asked == [("ease", entry.path)] and not decision.moved
    assert (
        "full_ndcg@10 0.2200 does not beat ease v1's 0.2500" in decision.reason
    )  # test items, not validation
    better = best.consider(
        root, "synth-tiny", "ncf", newcomer, "ncf", rescore=lambda m, p: {"full_ndcg@10": 0.1}
    )
    assert better.moved and best.read_best(root, "synth-tiny")["version"] == newcomer.version


def test_recommend_best_says_when_there_is_none(tmp_path, capsys):
    from ncflow.cli import main as cli

    assert cli(["recommend", "--model", "best", "--dataset", "synth-tiny", "--user", "1",
                "--registry-dir", str(tmp_path)]) == 2  # fmt: skip
    assert "no `best` model for synth-tiny" in capsys.readouterr().err
    assert json.dumps(best.read_best(tmp_path, "synth-tiny")) == "null"
