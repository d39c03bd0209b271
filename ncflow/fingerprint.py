"""What a training run is a function of: its data (the source's md5), its settings and ncflow's code.

A scheduled retraining whose fingerprint equals a registered version's would train the same model
again (training is seeded), so the flow stops there: "no new data since vN". Paths (where data, runs
and the registry live) are not settings: moving a folder does not make new data. `force` retrains anyway.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

PACKAGES = ("ncflow", "models", "configs", "flows", "tasks")  # the code a run executes
NOT_SETTINGS = (
    "data_dir",
    "runs_dir",
    "registry_dir",
    "keep_versions",
    "force",
    "scheduler",
    "rendezvous_timeout",
)  # where, not what


@cache
def code_digest() -> str:
    """sha256 of every .py and .yaml file of ncflow's packages, by relative path (computed once)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(root)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(data_md5: str, params: dict[str, Any], split: dict[str, Any]) -> dict[str, str]:
    """{data, settings, code}: `params` a flow's parameters, `split` the resolved preprocessing config
    (where a relative time window, window_days, becomes dates)."""
    settings = {k: v for k, v in params.items() if k not in NOT_SETTINGS}
    text = json.dumps([settings, split], sort_keys=True, default=str)
    return {
        "data": data_md5,
        "settings": hashlib.sha256(text.encode()).hexdigest()[:16],
        "code": code_digest(),
    }
