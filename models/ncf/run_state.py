"""A run's state across its user shards: which users each rank owns, the whole model and run state
gathered from every rank's rows (for the bundle and checkpoints), and a checkpoint put back.

Users are sharded, not replicated (models/ncf/train.py): rank r keeps only its users' rows of the user
table and of its Adam state. A checkpoint holds every row; models/common/checkpoint.resume refuses one
of another configuration or world size and hands the state to load_run_state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from models.common.checkpoint import trainer_state
from models.ncf.model import NeuMF

if TYPE_CHECKING:
    from models.ncf.train import Trainer


def user_shards(train_user: torch.Tensor, n_users: int, world_size: int) -> list[tuple[int, int, int, int]]:
    """(first user, end user, first positive, end positive) of each rank: contiguous user ranges that
    split the positives (sorted by user) as evenly as whole users allow."""
    p = len(train_user)
    cuts = [0] + [int(train_user[p * r // world_size]) for r in range(1, world_size)] + [n_users]
    cuts = [max(cuts[: i + 1]) for i in range(len(cuts))]  # monotone even for tiny data
    starts = torch.searchsorted(
        train_user, torch.tensor(cuts, dtype=train_user.dtype, device=train_user.device)
    )
    starts = starts.tolist()
    return [(cuts[r], cuts[r + 1], starts[r], starts[r + 1]) for r in range(world_size)]


def full_rows(trainer: Trainer, local: torch.Tensor) -> torch.Tensor:
    """The whole user table (or a same-shaped Adam state) from every rank's rows, on every rank."""
    if not trainer.d.enabled:
        return local
    sizes = [max(1, hi - lo) for lo, hi, _, _ in trainer.shards]
    padded = local.new_zeros(max(sizes), *local.shape[1:])
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    full = torch.cat([part[:size] for part, size in zip(parts, sizes)])
    return full[: trainer.data.n_users]


def full_model(trainer: Trainer) -> NeuMF:
    """The unsharded model (rank 0 writes it); a view of the local one on a single rank."""
    if not trainer.d.enabled:
        return trainer.model
    state = trainer.model.state_dict()
    state["user_embed.weight"] = full_rows(trainer, trainer.user_table.detach())
    with torch.device(trainer.d.device):
        full = NeuMF(trainer.model_config)
    full.load_state_dict(state)
    return full


def run_state(trainer: Trainer, epoch: int, history: list[dict]) -> dict:
    """Everything that resumes this run (trainer_state's), with the user rows of every rank (collective)."""
    state = trainer_state(trainer, epoch, history)  # fresh dicts and lists: edits leave the live state alone
    index = trainer.optimizer.params.index(trainer.user_table)
    for name in ("exp_avg", "exp_avg_sq"):
        state["optimizer"][name][index] = full_rows(trainer, state["optimizer"][name][index])
    state["model"]["user_embed.weight"] = full_rows(trainer, trainer.user_table.detach())
    if state["best"] is not None:  # a copy: the kept weights stay this rank's rows
        state["best"] = {**state["best"], "model": dict(state["best"]["model"])}
        state["best"]["model"]["user_embed.weight"] = full_rows(
            trainer, state["best"]["model"]["user_embed.weight"]
        )
    return state


def load_run_state(trainer: Trainer, state: dict) -> None:
    """Put a run_state back: this rank keeps its users' rows."""
    lo, hi = trainer.user_lo, trainer.user_lo + len(trainer.user_table)
    model = state["model"]
    model["user_embed.weight"] = model["user_embed.weight"][lo:hi]
    trainer.model.load_state_dict(model)
    index = trainer.optimizer.params.index(trainer.user_table)
    optimizer = state["optimizer"]
    for name in ("exp_avg", "exp_avg_sq"):
        optimizer[name][index] = optimizer[name][index][lo:hi]
    trainer.optimizer.load_state_dict(optimizer)
    trainer.scaler.load_state_dict(state["scaler"])
    if state.get("best") is not None:
        best = state["best"]
        best["model"]["user_embed.weight"] = best["model"]["user_embed.weight"][lo:hi]
        trainer.best = best
