"""The processed dataset's manifest, as trainers read it (no pydantic: trainers run without it)."""

from __future__ import annotations

import json
from pathlib import Path


def read_processed_manifest(folder: Path, protocol: str) -> dict:
    """manifest.json of a folder `ncflow data --protocol <protocol>` wrote; a one-line exit otherwise."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise SystemExit(
            f"error: {folder} is not a processed dataset (no manifest.json): run `ncflow data` first"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("protocol") != protocol:
        raise SystemExit(
            f"error: {folder} holds the {manifest.get('protocol')!r} protocol; this trainer needs {protocol!r} "
            f"(run `ncflow data DATASET --protocol {protocol}`)"
        )
    return manifest
