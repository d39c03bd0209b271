"""Train NeuMF on a processed NCF dataset; evaluate every epoch; checkpoint; write a model bundle.

    python -m models.ncf.train --data DIR --out DIR                           # one process, GPU if any
    torchrun --nproc-per-node 2 -m models.ncf.train --data DIR --out DIR      # DDP: NCCL on GPUs, gloo on CPUs
    torchrun --nproc-per-node 2 -m models.ncf.train --data DIR --out DIR --device cpu --batch-size 8192

Imports torch, numpy, pyarrow (and CuPy on GPUs) only: it runs where Prefect is not installed.
Started again with the same --out, it resumes after the last complete epoch and ends with the same
weights as a run that was never interrupted. stdout: one JSON object per event; stderr: progress.

How an epoch works, and why it is fast: all data lives on the device. Each epoch the positives are
shuffled (one global order, the same on every rank), each rank takes every world_size-th of them,
and the sampler draws `negatives` items for each (CuPy on GPUs, NumPy on CPUs, handed over through
DLPack). A step takes a contiguous slice of positives and their negatives as rows (B, 1+k): the user
row is gathered once per positive instead of 1+k times, and nothing is gathered or copied per step.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from models.common.batching import even_batches
from models.common.checkpoint import epoch_seed, resume, save_checkpoint, trainer_state
from models.common.distributed import Dist, all_reduce_sum, sync
from models.common.entrypoint import run_trainer
from models.common.events import Events
from models.common.precision import Precision, resolve_precision
from models.ncf.bundle import write_bundle
from models.ncf.data import NCFData, load_ncf_data
from models.ncf.evaluate import chunk_sums, evaluate
from models.ncf.model import NeuMF, NeuMFConfig
from models.ncf.sampler import draw_negatives, permutation


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # NVIDIA's cap; training stops earlier at target_hr
    batch_size: int = 2**20  # global samples (positives + negatives) per step, split across ranks
    lr: float = 0.0045  # Adam settings of NVIDIA's NCF, tuned for the 2^20 batch
    beta1: float = 0.25
    beta2: float = 0.5
    eps: float = 1e-8
    negatives: int = 4  # per positive, redrawn every epoch
    verified_negatives: bool = False  # False: NVIDIA's unverified "shortcut" (~0.5% false negatives)
    precision: str = "auto"  # fp32 | tf32 | bf16 | fp16; auto: bf16 on GPUs, fp32 on CPUs
    target_hr: float = 0.9562  # HR@10 that ends training: the MLPerf/NVIDIA ml-20m target
    topk: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    compile: bool = True  # torch.compile on GPUs (ignored on CPUs, where it costs more than it saves)
    sorted_embedding_grad: bool = False  # sorted segment-sum embedding backward instead of atomics
    byte_dropout: bool = False  # dropout noise as eager random bytes (p quantised to 1/256)
    grad_compression: str = "none"  # none | bf16: all-reduce gradients in bf16 (NCCL only): half the bytes
    eval_users_per_chunk: int = 32768  # evaluation chunk: (users, 1+K) candidates at a time
    mf_dim: int = 64
    mlp_layers: tuple[int, ...] = (256, 256, 128, 64)
    dropout: float = 0.5

    def __post_init__(self) -> None:
        checks = {
            "epochs must be >= 1": self.epochs >= 1,
            "batch-size must be >= 2": self.batch_size >= 2,
            "lr must be > 0": self.lr > 0,
            "negatives must be >= 1": self.negatives >= 1,
            "precision must be auto, fp32, tf32, bf16 or fp16": self.precision
            in ("auto", "fp32", "tf32", "bf16", "fp16"),
            "device must be auto, cuda or cpu": self.device in ("auto", "cuda", "cpu"),
            "grad-compression must be none or bf16": self.grad_compression in ("none", "bf16"),
            "target-hr must be in (0, 1]": 0 < self.target_hr <= 1,
            "eval-users-per-chunk must be >= 1": self.eval_users_per_chunk >= 1,
        }
        bad = [message for message, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(bad))


def array_module(device: torch.device):
    """NumPy on CPUs, CuPy on GPUs: the sampler's one code path runs on either."""
    if device.type == "cpu":
        import numpy

        return numpy
    try:
        import cupy
    except ImportError:
        raise SystemExit("error: training on a GPU needs CuPy: pip install 'ncflow[gpu]'") from None
    return cupy


class Trainer:
    """The model, its optimizer and the compiled step and evaluation, for one rank."""

    def __init__(self, cfg: TrainConfig, data: NCFData, d: Dist, precision: Precision):
        self.cfg, self.data, self.d, self.precision = cfg, data, d, precision
        self.xp = array_module(d.device)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model_config = NeuMFConfig(data.n_users, data.n_items, cfg.mf_dim, cfg.mlp_layers, cfg.dropout)
        self.model = NeuMF(self.model_config, cfg.sorted_embedding_grad, cfg.byte_dropout).to(d.device)
        fused = d.device.type == "cuda"
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision.loss_scaling)
        net = (
            DDP(self.model, broadcast_buffers=False, gradient_as_bucket_view=True)
            if d.enabled
            else self.model
        )
        if cfg.grad_compression == "bf16" and d.enabled:
            if d.device.type != "cuda":
                raise SystemExit(
                    "error: --grad-compression bf16 needs NCCL (GPUs); gloo has no bf16 all-reduce"
                )
            # The dense embedding gradients (~127 MB fp32 on ml-20m) are the all-reduce's bulk.
            net.register_comm_hook(None, default_hooks.bf16_compress_hook)
        self.compiled = cfg.compile and d.device.type == "cuda"
        self.forward_loss = torch.compile(self._forward_loss) if self.compiled else self._forward_loss
        sums = chunk_sums(self.model, precision, cfg.topk)
        self.eval_sums = torch.compile(sums) if self.compiled else sums
        self.net = net
        # Each rank trains the same number of positives per epoch, so ranks take equal step counts;
        # the few left over (< steps per rank) come first in a later epoch's shuffle, as likely as any.
        self.local_positives = len(data.train_user) // d.world_size
        per_rank = max(1, cfg.batch_size // d.world_size // (1 + cfg.negatives))
        self.batch_positives, self.steps = even_batches(self.local_positives, per_rank)
        labels = torch.zeros(self.batch_positives, 1 + cfg.negatives, device=d.device)
        labels[:, 0] = 1.0
        self.labels = labels  # (B, 1+k): column 0 the positive

    def _forward_loss(self, users: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast(self.d.device):
            logits = self.net(users, items)  # (B, 1+k)
        return F.binary_cross_entropy_with_logits(logits.float(), labels)

    def epoch_samples(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's positives (P,), (P,) and negatives (k, P) for `epoch`, drawn on the device."""
        xp, cfg, d = self.xp, self.cfg, self.d
        n = self.local_positives * d.world_size
        order = permutation(xp, len(self.data.train_user), seed=cfg.seed, epoch=epoch, rank=0)
        mine = order[d.rank : n : d.world_size]  # (P,) global shuffle, strided shard by global rank
        users = xp.from_dlpack(self.data.train_user)[mine]
        items = xp.from_dlpack(self.data.train_item)[mine]
        verify = xp.from_dlpack(self.data.train_keys) if cfg.verified_negatives else None
        negatives = draw_negatives(
            xp, users, self.data.n_items, negatives=cfg.negatives, seed=cfg.seed, epoch=epoch, rank=d.rank,
            verify_keys=verify,
        )  # fmt: skip
        return torch.from_dlpack(users), torch.from_dlpack(items), torch.from_dlpack(negatives)

    def train_epoch(self, epoch: int) -> float:
        torch.manual_seed(epoch_seed(self.cfg.seed, epoch, self.d.rank))  # dropout: replayable on resume
        users, items, negatives = self.epoch_samples(epoch)
        self.model.train()
        b = self.batch_positives
        loss_sum = torch.zeros((), device=self.d.device)
        for step in range(self.steps):
            rows = slice(step * b, (step + 1) * b)
            batch_items = torch.cat([items[rows, None], negatives[:, rows].t()], dim=1)  # (B, 1+k)
            loss = self.forward_loss(users[rows], batch_items, self.labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach()
        return float(all_reduce_sum(loss_sum / self.steps)) / self.d.world_size

    def evaluate(self) -> tuple[float, float]:
        self.model.eval()
        return evaluate(
            self.eval_sums, self.data.candidates, rank=self.d.rank, world_size=self.d.world_size,
            chunk=self.cfg.eval_users_per_chunk,
        )  # fmt: skip

    def warm_up(self) -> None:
        """Compile the step and the evaluation before the clock starts; weights stay untouched."""
        if not self.compiled:
            return
        b = self.batch_positives
        users, items = self.data.train_user[:b], self.data.train_item[:b]
        batch_items = items[:, None].expand(b, 1 + self.cfg.negatives).contiguous()
        self.model.train()
        self.scaler.scale(self.forward_loss(users, batch_items, self.labels)).backward()
        self.optimizer.zero_grad(set_to_none=True)
        self.evaluate()


def train(cfg: TrainConfig, data_dir: Path, out: Path, d: Dist) -> dict:
    events = Events(d.is_main)
    precision = resolve_precision(cfg.precision, d.device)
    data = load_ncf_data(data_dir, d.device)
    trainer = Trainer(cfg, data, d, precision)
    start_epoch, history = resume(out, trainer)
    if start_epoch:
        events.emit("resume", epoch=start_epoch)
    events.emit(
        "start", config=dataclasses.asdict(cfg), precision=precision.name, world_size=d.world_size,
        parameters=trainer.model.get_num_params(), users=data.n_users, items=data.n_items,
        train_positives=len(data.train_user), steps_per_epoch=trainer.steps, device=str(d.device),
    )  # fmt: skip
    compile_start = time.perf_counter()
    trainer.warm_up()
    events.say(
        f"compiled in {time.perf_counter() - compile_start:.1f}s" if trainer.compiled else "eager mode"
    )

    done = any(h["hr@10"] >= cfg.target_hr for h in history)
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        sync(d.device)
        t0 = time.perf_counter()
        loss = trainer.train_epoch(epoch)
        sync(d.device)
        t1 = time.perf_counter()
        hr, ndcg = trainer.evaluate()
        sync(d.device)
        t2 = time.perf_counter()
        samples = trainer.steps * trainer.batch_positives * (1 + cfg.negatives) * d.world_size
        record = {
            "epoch": epoch, "loss": loss, "hr@10": hr, "ndcg@10": ndcg,
            "train_seconds": t1 - t0, "eval_seconds": t2 - t1,
            "train_samples_per_s": samples / (t1 - t0),
            "eval_samples_per_s": data.candidates.numel() / (t2 - t1),
        }  # fmt: skip
        history.append(record)
        done = hr >= cfg.target_hr
        if d.is_main:
            save_checkpoint(out, trainer_state(trainer, epoch, history))
        events.emit("epoch", **record)
        events.say(
            f"epoch {epoch:3d}  loss {loss:.4f}  HR@{cfg.topk} {hr:.4f}  NDCG@{cfg.topk} {ndcg:.4f}  "
            f"{record['train_samples_per_s'] / 1e6:.1f}M samples/s  {t1 - t0:.2f}s + eval {t2 - t1:.2f}s"
        )
    summary = summarize(history, cfg.target_hr)
    if d.is_main:
        bundle = write_bundle(out / "bundle", trainer.model, trainer.model_config, cfg, data_dir, summary)
        summary["bundle"] = str(bundle)
    events.emit("done", **summary)
    return summary


def summarize(history: list[dict], target_hr: float) -> dict:
    if not history:
        return {"epochs": 0}
    best = max(history, key=lambda h: h["hr@10"])
    elapsed, time_to_target = 0.0, None
    for h in history:
        elapsed += h["train_seconds"] + h["eval_seconds"]
        if time_to_target is None and h["hr@10"] >= target_hr:
            time_to_target = elapsed
    last = history[-1]
    return {
        "epochs": len(history), "hr@10": last["hr@10"], "ndcg@10": last["ndcg@10"], "loss": last["loss"],
        "best_epoch": best["epoch"], "best_hr@10": best["hr@10"], "target_hr": target_hr,
        "time_to_target_s": time_to_target, "train_seconds": sum(h["train_seconds"] for h in history),
        "seconds": elapsed,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_trainer(
        "python -m models.ncf.train",
        __doc__.split("\n")[0],
        TrainConfig,
        train,
        "a folder written by `ncflow data`",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
