"""ncflow.locks.exclusive: one holder at a time across processes, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncflow.locks import exclusive, lock_path

REPO = Path(__file__).resolve().parents[1]
WAITER = (
    "import sys; from ncflow.locks import exclusive\nwith exclusive(sys.argv[1]): print('got it', flush=True)"
)


def test_a_second_process_waits_for_the_holder_then_gets_the_lock(tmp_path: Path) -> None:
    output = tmp_path / "processed" / "folder"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with exclusive(output):
        assert lock_path(output).is_file()
        waiter = subprocess.Popen(
            [sys.executable, "-c", WAITER, str(output)], env=env, stdout=subprocess.PIPE, text=True
        )
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=3)  # blocked for as long as we hold it
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and out.strip() == "got it"
    assert not lock_path(output).exists()  # the last holder removes the file


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), exclusive(tmp_path / "x"):
        raise RuntimeError("boom")
    with exclusive(tmp_path / "x"):  # would block forever if the first were still held
        pass
    assert list(tmp_path.iterdir()) == []
