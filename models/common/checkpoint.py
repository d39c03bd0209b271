"""Checkpoints that are complete or absent: written to a temporary file, then renamed.

Random streams need no saving: samplers are counter-based in (seed, epoch, rank) and dropout is
re-seeded from the same triple at each epoch, so a resumed run replays exactly what was lost.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", suffix=".part", dir=out)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, out / CHECKPOINT)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(out: Path, device: torch.device) -> dict[str, Any] | None:
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=False)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The dropout seed of one rank's epoch: fixed by the triple, so a replayed epoch is identical."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63 - 1)
