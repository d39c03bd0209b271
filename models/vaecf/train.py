"""Train Mult-VAE (VAE-CF) on a processed vaecf dataset; validate every epoch; checkpoint; write a bundle.

    python -m models.vaecf.train --data DIR --out DIR --epochs 100                 # one process, GPU if any
    torchrun --nproc-per-node 2 -m models.vaecf.train --data DIR --out DIR         # DDP: NCCL on GPUs
    torchrun --nproc-per-node 2 -m models.vaecf.train --data DIR --out DIR --device cpu --batch-size 500
    python -m models.vaecf.train ... --anneal paper                                # beta -> 0.2 over 200k steps

Imports torch, numpy, pyarrow (and CuPy on GPUs when present) only: it runs where Prefect is not
installed. Started again with the same --out it resumes after the last checkpointed epoch and ends
with the same weights as an uninterrupted run. --epochs may differ on resume (nothing in an epoch
depends on the total), so a finished run can be extended; any other change of config is refused.
stdout: one JSON object per event (start, resume, epoch, done); stderr: progress.

Model selection: every epoch is scored on the validation users, and the bundle holds the weights of
the epoch with the best validation NDCG@100 (as the paper does), not the last; test is scored once, on
them, at the end. The `done` event names that epoch (`weights_epoch`).

How an epoch works: all data lives on the device. The training users are shuffled by a permutation
that is a pure function of (seed, epoch), the same on every rank; rank r takes every world_size-th
user, so ranks hold equal shares and take equal step counts. That shard is gathered once into its own
CSR (one host copy of its indptr per epoch); a step is then a contiguous row slice, whose nonzero
boundaries are already on the host: no device sync per step. Dropout masks and the reparameterisation
noise are drawn eagerly from a generator re-seeded per (seed, epoch, rank): a replayed epoch is the same.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from models.common.batching import even_batches
from models.common.checkpoint import epoch_seed, resume, save_checkpoint, trainer_state
from models.common.distributed import Dist, all_reduce_sum, sync
from models.common.entrypoint import exit_now, run_trainer
from models.common.events import Events
from models.common.precision import Precision, resolve_precision
from models.ncf.sampler import permutation
from models.vaecf.data import CSRTensors, SparseBatch, VAEData, load_vae_data, row_slice, take_rows
from models.vaecf.evaluate import evaluate, full_rank, model_scorer
from models.vaecf.model import (
    NVIDIA_ANNEAL,
    PAPER_ANNEAL,
    Anneal,
    MultVAE,
    VAEConfig,
    kl_divergence,
    multinomial_nll,
)

ANNEALS = {"nvidia": NVIDIA_ANNEAL, "paper": PAPER_ANNEAL, "none": Anneal(cap=0.0, steps=1)}
RESUMABLE_CHANGES = {"epochs", "checkpoint_every"}  # they never change what an epoch computes


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 400  # NVIDIA's default; most runs pass fewer
    batch_size: int = 24_576  # global users per step, split across ranks: NVIDIA's (the paper: 500)
    lr: float = 0.004  # Adam settings of NVIDIA's VAE-CF, tuned for the 24,576 batch
    beta1: float = 0.9
    beta2: float = 0.9
    eps: float = 1e-8
    anneal: str = (
        "nvidia"  # KL weight schedule: nvidia (cap 0.1, 1/15,000 per step) | paper (0.2, 1/200,000) | none
    )
    precision: str = "auto"  # fp32 | tf32 | bf16 | fp16; auto: bf16 on GPUs, fp32 on CPUs
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    compile: bool = True  # torch.compile of the step on GPUs (ignored on CPUs)
    checkpoint_every: int = 1  # epochs; a ml-20m epoch takes ~0.1 s on a GPU, its checkpoint ~300 MB
    eval_users_per_chunk: int = 4096  # evaluation block: (users, items) scores at a time
    hidden: int = 600
    latent: int = 200
    dropout: float = 0.5

    def __post_init__(self) -> None:
        checks = {
            "epochs must be >= 1": self.epochs >= 1,
            "batch-size must be >= 1": self.batch_size >= 1,
            "lr must be > 0": self.lr > 0,
            f"anneal must be one of {', '.join(ANNEALS)}": self.anneal in ANNEALS,
            "precision must be auto, fp32, tf32, bf16 or fp16": self.precision
            in ("auto", "fp32", "tf32", "bf16", "fp16"),
            "device must be auto, cuda or cpu": self.device in ("auto", "cuda", "cpu"),
            "checkpoint-every must be >= 1": self.checkpoint_every >= 1,
            "eval-users-per-chunk must be >= 1": self.eval_users_per_chunk >= 1,
        }
        bad = [message for message, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(bad))


def array_module(device: torch.device):
    """CuPy on GPUs when installed (the shuffle stays on the device), else NumPy (one small copy)."""
    if device.type == "cuda":
        try:
            import cupy

            return cupy
        except ImportError:
            pass
    return np


class Trainer:
    """The model, its optimizer, the (compiled) step and the evaluation, for one rank."""

    def __init__(self, cfg: TrainConfig, data: VAEData, d: Dist, precision: Precision):
        self.cfg, self.data, self.d, self.precision = cfg, data, d, precision
        self.xp = array_module(d.device)
        self.anneal = ANNEALS[cfg.anneal]
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = MultVAE(VAEConfig(data.n_items, cfg.hidden, cfg.latent, cfg.dropout)).to(d.device)
        cuda = d.device.type == "cuda"
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=cuda
        )  # fused: one kernel, and GradScaler's inf check stays on the device (no sync per step)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision.loss_scaling)
        self.net = (
            DDP(self.model, broadcast_buffers=False, gradient_as_bucket_view=True)
            if d.enabled
            else self.model
        )
        self.compiled = cfg.compile and cuda
        self.forward_loss = torch.compile(self._forward_loss) if self.compiled else self._forward_loss
        # Equal shares, so equal step counts on every rank; steps of equal size (one compiled shape),
        # at most batch_size users each, so fewer than `steps` users per rank wait for the next epoch.
        self.local_users = data.train.rows // d.world_size
        if self.local_users < 1:
            raise SystemExit(
                f"error: {data.train.rows} training users cannot be shared by {d.world_size} ranks"
            )
        self.batch, self.steps = even_batches(self.local_users, max(1, cfg.batch_size // d.world_size))
        self.best: dict | None = None  # {"epoch", "value", "model"}: the best validation epoch so far

    def keep_if_best(self, epoch: int, value: float) -> None:
        """Copy the weights when `value` (validation NDCG@100) beats the best so far; a tie does not."""
        if self.best is None or value > self.best["value"]:
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"epoch": epoch, "value": value, "model": weights}

    def _forward_loss(self, indices, offsets, weights, noise, rows, counts, beta):
        with self.precision.autocast(self.d.device):
            logits, mu, logvar = self.net(indices, offsets, weights, noise)  # (B, items), (B, latent) x 2
        return multinomial_nll(logits, rows, indices, counts) + beta * kl_divergence(mu, logvar)

    def epoch_shard(self, epoch: int) -> CSRTensors:
        """This rank's users for `epoch`, in order, as a CSR on the device."""
        xp, d = self.xp, self.d
        order = permutation(xp, self.data.train.rows, seed=self.cfg.seed, epoch=epoch, rank=0)
        mine = order[d.rank : self.local_users * d.world_size : d.world_size]  # global order, strided by rank
        mine = torch.from_dlpack(xp.ascontiguousarray(mine)).to(d.device)
        return take_rows(self.data.train, mine)

    def batch_loss(self, batch: SparseBatch, beta: torch.Tensor) -> torch.Tensor:
        weights = self.model.input_weights(batch.rows, batch.counts)  # normalisation x dropout, eager RNG
        noise = torch.randn(batch.size, self.cfg.latent, device=self.d.device)
        if self.compiled:  # the nonzero count changes every step: one dynamic-shape graph, no recompiles
            for t in (batch.indices, weights, batch.rows):
                torch._dynamo.mark_dynamic(t, 0)
        return self.forward_loss(batch.indices, batch.offsets, weights, noise, batch.rows, batch.counts, beta)

    def step(self, shard: CSRTensors, step: int, beta: torch.Tensor) -> torch.Tensor:
        loss = self.batch_loss(row_slice(shard, step * self.batch, (step + 1) * self.batch), beta)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def train_epoch(self, epoch: int) -> float:
        torch.manual_seed(epoch_seed(self.cfg.seed, epoch, self.d.rank))  # dropout, noise: replayable
        shard = self.epoch_shard(epoch)
        first = epoch * self.steps  # updates so far: the KL schedule counts optimizer steps
        betas = torch.tensor([self.anneal.beta(first + i) for i in range(self.steps)], device=self.d.device)
        self.model.train()
        loss_sum = torch.zeros((), device=self.d.device)
        for step in range(self.steps):
            loss_sum += self.step(shard, step, betas[step])
        return float(all_reduce_sum(loss_sum / self.steps)) / self.d.world_size

    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        foldin, target = self.data.heldout(split)
        return evaluate(
            model_scorer(self.model, self.precision), foldin, target, rank=self.d.rank,
            world_size=self.d.world_size, chunk=self.cfg.eval_users_per_chunk, seen=self.data.masked(split),
        )  # fmt: skip

    def full_rank_test(self) -> dict[str, float]:
        """Full-ranking metrics of the test users (every rank scores all of them: once, at the end)."""
        self.model.eval()
        foldin, target = self.data.heldout("test")
        scorer = model_scorer(self.model, self.precision)
        return full_rank(scorer, foldin, target, self.cfg.eval_users_per_chunk, seen=self.data.masked("test"))

    def warm_up(self) -> None:
        """Compile the step before the clock starts; the weights and optimizer stay untouched."""
        if not self.compiled:
            return
        self.model.train()
        n, dev = self.data.train.rows, self.d.device
        for start in (0, 1):  # two nonzero counts: the second call must reuse the dynamic graph
            shard = take_rows(self.data.train, (torch.arange(self.batch, device=dev) + start) % n)
            loss = self.batch_loss(row_slice(shard, 0, self.batch), torch.zeros((), device=dev))
            self.scaler.scale(loss).backward()  # no optimizer step: the weights stay as initialised
            self.optimizer.zero_grad(set_to_none=True)


def compatible(saved: dict, cfg: TrainConfig) -> bool:
    now = dataclasses.asdict(cfg)
    return {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES} == {
        k: v for k, v in now.items() if k not in RESUMABLE_CHANGES
    }


def train(cfg: TrainConfig, data_dir: Path, out: Path, d: Dist) -> dict:
    events = Events(d.is_main)
    precision = resolve_precision(cfg.precision, d.device)
    data = load_vae_data(data_dir, d.device)
    trainer = Trainer(cfg, data, d, precision)
    start_epoch, history = resume(out, trainer, compatible)
    if start_epoch:
        events.emit("resume", epoch=start_epoch)
    events.emit(
        "start", config=dataclasses.asdict(cfg), precision=precision.name, world_size=d.world_size,
        parameters=trainer.model.get_num_params(), items=data.n_items, train_users=data.train.rows,
        valid_users=data.valid_foldin.rows, test_users=data.test_foldin.rows, steps_per_epoch=trainer.steps,
        batch_per_rank=trainer.batch, device=str(d.device),
    )  # fmt: skip
    compile_start = time.perf_counter()
    trainer.warm_up()
    events.say(
        f"compiled in {time.perf_counter() - compile_start:.1f}s" if trainer.compiled else "eager mode"
    )

    users = trainer.steps * trainer.batch * d.world_size  # trained per epoch, all ranks
    for epoch in range(start_epoch, cfg.epochs):
        sync(d.device)
        t0 = time.perf_counter()
        loss = trainer.train_epoch(epoch)
        sync(d.device)
        t1 = time.perf_counter()
        valid = trainer.evaluate("valid")
        sync(d.device)
        t2 = time.perf_counter()
        record = {
            "epoch": epoch, "loss": loss, "beta": trainer.anneal.beta((epoch + 1) * trainer.steps - 1), **valid,
            "users_per_s": users / (t1 - t0), "train_seconds": t1 - t0, "eval_seconds": t2 - t1, "seconds": t2 - t0,
        }  # fmt: skip
        history.append(record)
        trainer.keep_if_best(epoch, valid["ndcg@100"])
        if d.is_main and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            save_checkpoint(out, trainer_state(trainer, epoch, history))
        events.emit("epoch", **record)
        events.say(
            f"epoch {epoch:3d}  loss {loss:.4f}  NDCG@100 {valid['ndcg@100']:.4f}  R@20 {valid['recall@20']:.4f}  "
            f"R@50 {valid['recall@50']:.4f}  {record['users_per_s']:,.0f} users/s  "
            f"{t1 - t0:.2f}s + eval {t2 - t1:.2f}s"
        )
    if trainer.best is not None:
        trainer.model.load_state_dict(trainer.best["model"])
        events.say(f"kept the weights of epoch {trainer.best['epoch']}: best validation NDCG@100")
    test = trainer.evaluate("test") | trainer.full_rank_test()
    summary = summarize(history, {k: v for k, v in test.items() if k != "full_users"})
    if trainer.best is not None:
        summary["weights_epoch"] = trainer.best["epoch"]
    if d.is_main:
        summary["bundle"] = str(write_bundle_for(out, trainer, cfg, data_dir, summary, history))
    events.emit("done", **summary)
    return summary


def write_bundle_for(
    out: Path, trainer: Trainer, cfg: TrainConfig, data_dir: Path, summary: dict, history
) -> Path:
    from models.vaecf.bundle import write_bundle

    return write_bundle(out / "bundle", trainer.model, cfg, data_dir, {**summary, "history": history})


def summarize(history: list[dict], test: dict[str, float]) -> dict:
    summary: dict = {"epochs": len(history), **{f"test_{k}": v for k, v in test.items()}}
    if history:
        last, best = history[-1], max(history, key=lambda h: h["ndcg@100"])
        summary.update(
            {k: last[k] for k in ("loss", "ndcg@100", "recall@20", "recall@50")},
            best_epoch=best["epoch"], best_ndcg100=best["ndcg@100"],
            users_per_s=float(np.median([h["users_per_s"] for h in history])),
            train_seconds=sum(h["train_seconds"] for h in history), seconds=sum(h["seconds"] for h in history),
        )  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_trainer(
        "python -m models.vaecf.train",
        __doc__.split("\n")[0],
        TrainConfig,
        train,
        "a folder written by `ncflow data --protocol vaecf`",
        argv,
        config_dir="vaecf",
        # The NCF split (--protocol ncf) trains on every user: it has no train_users count.
        batch_units=lambda manifest, cfg: (
            manifest["counts"].get("train_users") or manifest["counts"]["users"]
        ),
    )


if __name__ == "__main__":
    exit_now(main())
