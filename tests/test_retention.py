"""Bounded growth (ncflow/retention.py): the registry keeps each family's champion, the dataset's `best`
and the newest `keep_versions`; run folders go once their run is over and no kept version refers to
them; a pruned version is a clear error in `recommend`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs import PreprocessConfig
from models.ncf.bundle import load_bundle, write_bundle
from models.ncf.model import NeuMF, NeuMFConfig
from models.ncf.train import TrainConfig
from ncflow import best, registry, retention
from ncflow.cli import main as cli
from ncflow.data.preprocess import preprocess, read_manifest
from ncflow.data.synth import write_synthetic
from tasks.register import register_model

REPO = Path(__file__).resolve().parents[1]
# The flow's side of a run folder, in another process: it holds the folder until stdin closes.
HOLDER = (
    "import sys; from ncflow import retention\n"
    "with retention.running(sys.argv[1]):\n"
    "    print('running', flush=True); sys.stdin.read()"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retention")
    raw = write_synthetic("tiny", root / "raw")
    return preprocess("synth-tiny", raw, root, PreprocessConfig(protocol="ncf"), device="cpu")


def run_folder(runs: Path, name: str, data: Path) -> Path:
    """runs/<name>/bundle: a real (untrained) NCF bundle, as a flow run's training leaves it."""
    counts = read_manifest(data)["counts"]
    config = NeuMFConfig(counts["users"], counts["items"], mf_dim=4, mlp_layers=(8, 4), dropout=0.0)
    torch.manual_seed(0)
    return write_bundle(runs / name / "bundle", NeuMF(config), config, TrainConfig(), data, {})


def register(tmp_path: Path, data: Path, name: str, hr: float, ndcg: float, keep: int) -> dict:
    """One flow run's registration: its folder is held while it registers, then marked registered."""
    runs = tmp_path / "runs"
    with retention.running(runs / name) as run:
        bundle = run_folder(runs, name, data)
        metrics = {"hr@10": hr, "full_ndcg@10": ndcg}
        result = register_model.fn(
            "ncf", "synth-tiny", str(bundle), str(data), metrics, {"epochs": 1}, {}, str(tmp_path / "registry"),
            keep_versions=keep, runs_dir=str(runs),
        )  # fmt: skip
        run.outcome = {"state": "registered", "version": result["version"]}
    return result


def recommend(tmp_path: Path, version: str, user: str) -> int:
    return cli(["recommend", "--model", "ncf", "--dataset", "synth-tiny", "--version", version,
                "--user", user, "--registry-dir", str(tmp_path / "registry"), "--json"])  # fmt: skip


def test_eight_versions_keep_the_champion_the_best_and_the_newest_three(data, tmp_path, caplog, capsys):
    root = tmp_path / "registry"
    hr = [0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # v2 stays the champion
    ndcg = [0.1, 0.1, 0.2, 0.8, 0.3, 0.3, 0.3, 0.3]  # v4 stays the best
    caplog.set_level(logging.INFO, logger="ncflow")
    results = [
        register(tmp_path, data, f"run-{n}", h, g, keep=3) for n, (h, g) in enumerate(zip(hr, ndcg), 1)
    ]

    assert [r["version"] for r in results] == list(range(1, 9))
    assert registry.champion(root, "ncf", "synth-tiny").version == 2
    assert best.read_best(root, "synth-tiny")["version"] == 4
    assert [e.version for e in registry.versions(root, "ncf", "synth-tiny")] == [2, 4, 6, 7, 8]
    assert sorted(v for r in results for v in r["pruned"]) == [1, 3, 5]
    assert (
        "ncf synth-tiny: pruned v5 (kept v2 champion, v4 best, v6 newest, v7 newest, v8 newest)"
        in caplog.text
    )
    folder = root / "ncf" / "synth-tiny"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".pruned")]  # nothing half-deleted left
    # a run folder goes with its version; the kept versions' run folders (their source_bundle) stay
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [f"run-{n}" for n in (2, 4, 6, 7, 8)]
    assert "run folders: run-5" in caplog.text

    user = str(load_bundle(folder / "v8").user_ids[0])
    capsys.readouterr()
    for version in ("2", "4", "6", "7", "8", "champion", "latest"):
        assert recommend(tmp_path, version, user) == 0, version
        assert len(json.loads(capsys.readouterr().out)["items"]) == 10
    assert recommend(tmp_path, "3", user) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ncf synth-tiny v3 was pruned on" in err and "keep_versions=3" in err
    assert err.endswith("registered now: v2, v4, v6, v7, v8")
    assert recommend(tmp_path, "9", user) == 2  # never registered: the plain message
    assert "has no version v9" in capsys.readouterr().err


def test_run_folders_go_only_when_their_run_is_over_and_no_kept_version_needs_them(data, tmp_path):
    runs, root = tmp_path / "runs", tmp_path / "registry"
    with pytest.raises(RuntimeError), retention.running(runs / "failed"):
        run_folder(runs, "failed", data)
        raise RuntimeError("the trainer died")
    assert json.loads((runs / "failed" / retention.OUTCOME).read_text())["state"] == "failed"
    run_folder(runs, "killed", data)  # killed without an outcome: Prefect may still resume it
    kept = register(tmp_path, data, "registered", 0.5, 0.5, keep=1)
    assert kept["pruned_runs"] == ["failed"]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(runs / "running")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "running"
        run_folder(runs, "running", data)
        (runs / "running" / retention.OUTCOME).write_text("{}")  # even one that looks over: it is held
        assert retention.prune_runs(runs, root) == []
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    assert sorted(p.name for p in runs.iterdir()) == ["killed", "registered", "running"]
    assert retention.prune_runs(runs, root) == ["running"]  # over now, and no version refers to it
    assert (runs / "registered" / "bundle").is_dir()  # v1's source_bundle: still referred to


def test_a_version_in_use_is_not_pruned_and_a_half_pruned_one_never_looks_valid(data, tmp_path):
    root = tmp_path / "registry"
    for n in range(1, 4):
        register(tmp_path, data, f"run-{n}", 0.5, 0.5, keep=3)
    folder = root / "ncf" / "synth-tiny"
    with registry.in_use(folder / "v2"):  # a `recommend` loading v2
        removed, kept = retention.prune_versions(root, "ncf", "synth-tiny", keep=1)
    assert removed == [] and kept[2] == ["in use"] and kept[1] == ["champion", "best"]
    (folder / "v2").rename(folder / ".pruned-v2-1")  # a pruner killed between its rename and its delete
    assert [e.version for e in registry.versions(root, "ncf", "synth-tiny")] == [1, 3]
    removed, _ = retention.prune_versions(root, "ncf", "synth-tiny", keep=1)
    assert removed == [] and not (folder / ".pruned-v2-1").exists()  # the next prune finishes the job
    assert register(tmp_path, data, "run-4", 0.5, 0.5, keep=3)["version"] == 4  # numbers never reused


async def flow_run_logs() -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        logs, offset = [], 0
        while batch := await client.read_logs(limit=200, offset=offset):
            logs += batch
            offset += len(batch)
    return [entry.message for entry in logs]


def test_the_flow_prunes_with_keep_versions_and_says_so_in_its_log(
    prefect_server, tmp_path, monkeypatch, capsys
):
    import asyncio

    from prefect.logging.handlers import APILogHandler

    monkeypatch.chdir(tmp_path)
    command = ["train", "ease", "--dataset", "synth-tiny", "--force", "--keep-versions"]
    assert cli([*command, "0"]) == 2
    assert "keep_versions: Input should be greater than or equal to 1" in capsys.readouterr().err
    runs = []
    for _ in range(3):  # the same data again: ties, so v1 stays champion and best
        assert cli([*command, "1"]) == 0
        capsys.readouterr()
        runs.append(next(p.name for p in (tmp_path / "runs").iterdir() if p.name not in runs))
    assert [e.version for e in registry.versions(tmp_path / "registry", "ease", "synth-tiny")] == [1, 3]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([runs[0], runs[2]])
    line = f"ease synth-tiny: pruned v2 (kept v1 champion+best, v3 newest); run folders: {runs[1]}"
    APILogHandler().flush()  # the runs' last lines may still be on their way to the server
    assert line in asyncio.run(flow_run_logs())


# One registration as tasks/register.py makes it (the version held until its `best` decision), then a
# prune to 2 versions, in a process of its own.
REGISTRAR = """
import contextlib, sys
from pathlib import Path
from ncflow import best, registry, retention
root, bundle, score = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
metrics = {"hr@10": score, "full_ndcg@10": score}
with contextlib.ExitStack() as hold:
    reg = registry.register(root, "ncf", "synth-tiny", bundle, metrics=metrics, test_set="t", hold=hold)
    best.consider(root, "synth-tiny", "ncf", reg.entry, "ncf")
    assert (reg.entry.path / registry.RECORD).is_file()  # nobody pruned it while it was being decided
retention.prune(root, "ncf", "synth-tiny", 2)
"""


def test_concurrent_registrations_and_prunes_leave_a_consistent_registry(tmp_path):
    root = tmp_path / "registry"
    scores = [0.30, 0.80, 0.55, 0.90, 0.10, 0.70, 0.85, 0.20]
    procs = []
    for n, score in enumerate(scores):
        bundle = tmp_path / "bundles" / str(n)
        bundle.mkdir(parents=True)
        (bundle / "weights").write_bytes(os.urandom(64))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", REGISTRAR, str(root), str(bundle), str(score)],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(scores), errors
    champion = registry.champion(root, "ncf", "synth-tiny")
    alias = best.read_best(root, "synth-tiny")
    assert champion.metrics["hr@10"] == max(scores)  # both aliases point at versions that are there
    assert registry.read_entry(registry.resolve(root, "ncf", "synth-tiny", str(alias["version"])))
    left = {e.version for e in registry.versions(root, "ncf", "synth-tiny")}
    assert {champion.version, alias["version"], 7, 8} <= left  # the newest two are never pruned
    retention.prune_versions(root, "ncf", "synth-tiny", 2)
    assert {e.version for e in registry.versions(root, "ncf", "synth-tiny")} == {
        champion.version, alias["version"], 7, 8,
    }  # fmt: skip
    pruned = json.loads((root / "ncf" / "synth-tiny" / registry.PRUNED).read_text())
    assert set(map(int, pruned)) == set(range(1, 9)) - {champion.version, alias["version"], 7, 8}
    assert not [
        p for p in (root / "ncf" / "synth-tiny").iterdir() if p.name.startswith((".pruned", ".staging"))
    ]
