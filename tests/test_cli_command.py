"""The README's main path, as a user types it: the installed `ncflow` command in a fresh folder, with no
Prefect server set (no PREFECT_API_URL), so the CLI starts a temporary one of its own for the run.
EASE and plain MF (`--architecture mf`) on synth-tiny, the cheapest runs there are: each starts a server.

PREFECT_HOME is this module's own folder: the temporary server's database is then the tests', not the
account's (~/.prefect), which other runs on the machine may hold; the second test reuses the database
the first one created (a fresh one is set up on every start otherwise, about half of a start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncflow import registry

NCFLOW = Path(sys.executable).parent / "ncflow"  # the console script installed beside this Python


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


def ncflow(folder: Path, home: Path, *args: str) -> tuple[dict, str]:
    """Run `ncflow ARGS` in `folder` without a Prefect server; (its last line as JSON, its stderr)."""
    if not NCFLOW.is_file():
        pytest.skip(f"no installed ncflow command at {NCFLOW}")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # a busy machine starts it slowly
    }
    done = subprocess.run(
        [str(NCFLOW), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def check_run(folder: Path, result: dict, stderr: str, model: str) -> None:
    assert "Starting temporary server" in stderr  # its own server, not one set beforehand
    assert "prefect.flow_runs: Finished in state Completed()" in stderr, stderr[-3000:]
    assert (result["model"], result["dataset"], result["version"]) == (model, "synth-tiny", 1)
    versions = registry.versions(folder / "registry", model, "synth-tiny")
    assert [v.version for v in versions] == [1] and versions[0].path == Path(result["bundle"])
    assert registry.champion(folder / "registry", model, "synth-tiny").version == 1


def test_ncflow_train_ease_through_the_installed_command(tmp_path, prefect_home) -> None:
    result, stderr = ncflow(tmp_path, prefect_home, "train", "ease", "--dataset", "synth-tiny")
    check_run(tmp_path, result, stderr, "ease")


def test_ncflow_train_ncf_architecture_mf_through_the_installed_command(tmp_path, prefect_home) -> None:
    args = ["train", "ncf", "--dataset", "synth-tiny", "--architecture", "mf", "--epochs", "1", "--gpus", "0"]
    result, stderr = ncflow(tmp_path, prefect_home, *args)
    check_run(tmp_path, result, stderr, "ncf")  # plain MF registers as NCF: the same test items
    record = registry.read_entry(Path(result["bundle"])).record
    assert record["params"]["architecture"] == "mf" and result["epochs"] == 1
