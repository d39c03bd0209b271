"""Checkpoints that are complete or absent: written to a temporary file, then renamed.

Random streams need no saving: samplers are counter-based in (seed, epoch, rank) and dropout is
re-seeded from the same triple at each epoch, so a resumed run replays exactly what was lost.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
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


def trainer_state(trainer, epoch: int, history: list[dict]) -> dict[str, Any]:
    """What resumes a trainer (anything with model, optimizer, scaler, cfg, d) after `epoch`."""
    return {
        "model": trainer.model.state_dict(),  # the unwrapped module: no DDP or compile prefixes
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "next_epoch": epoch + 1,
        "history": history,
        "config": dataclasses.asdict(trainer.cfg),
        "world_size": trainer.d.world_size,
        "best": getattr(trainer, "best", None),  # the best validation epoch's weights, if it keeps them
    }


def resume(
    out: Path,
    trainer,
    same_config: Callable[[dict, Any], bool] | None = None,
    load: Callable[[Any, dict], None] | None = None,
) -> tuple[int, list[dict]]:
    """(first epoch to run, history so far) from `out`'s checkpoint; (0, []) when there is none.

    A checkpoint of another configuration or world size is refused: it would not replay the same run.
    `load` puts the state into the trainer (default: model, optimizer, scaler and best weights as saved
    by trainer_state; a trainer with sharded state brings its own).
    """
    state = load_checkpoint(out, trainer.d.device)
    if state is None:
        return 0, []
    same = (
        same_config(state["config"], trainer.cfg)
        if same_config
        else state["config"] == dataclasses.asdict(trainer.cfg)
    )
    if state["world_size"] != trainer.d.world_size or not same:
        raise SystemExit(f"error: {out} holds a checkpoint of another configuration: use a new --out")
    (load or load_trainer_state)(trainer, state)
    return state["next_epoch"], state["history"]


def load_trainer_state(trainer, state: dict[str, Any]) -> None:
    """Put a trainer_state back."""
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scaler.load_state_dict(state["scaler"])
    if state.get("best") is not None:
        trainer.best = state["best"]
