"""Run a test script under Triton's interpreter (TRITON_INTERPRET=1, CPU tensors) in a subprocess:
Triton reads the variable at import, so a test process that has imported it cannot switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_interpreted(script: str, done: str) -> None:
    """Run `script` with the kernels interpreted; it must exit 0 and print `done` at its end."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert done in run.stdout
