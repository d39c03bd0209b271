"""Train NeuMF on a processed NCF dataset; evaluate every epoch; checkpoint; write a model bundle.

    python -m models.ncf.train --data DIR --out DIR                           # one process, GPU if any
    torchrun --nproc-per-node 2 -m models.ncf.train --data DIR --out DIR      # NCCL on GPUs, gloo on CPUs
    torchrun --nproc-per-node 2 -m models.ncf.train --data DIR --out DIR --device cpu --batch-size 8192

Imports torch, numpy, pyarrow (and CuPy and Triton on GPUs) only: it runs where Prefect is not installed.
Started again with the same --out, it resumes after the last checkpointed epoch and ends with the
same weights as a run that was never interrupted. stdout: one JSON object per event; stderr: progress.

Model selection: on data with a validation split (`ncflow data --validation`), each epoch is scored on
the validation users only (`valid_hr@10`), which drives target_hr, patience and the choice of weights:
the bundle holds the best validation epoch's weights, and test is scored once, on them, at the end.
Without one, each epoch is scored on test (NVIDIA's protocol) and the bundle is the last epoch's.

How a step is fast:
- All data lives on the device. Each epoch the sampler draws `negatives` items per positive (CuPy on
  GPUs, NumPy on CPUs, handed over through DLPack); a step's rows are (B, 1+k) items with their user,
  so each user row is gathered once per positive, not 1+k times.
- No compiler: small Triton kernels (models/ncf/kernels.py) compile in seconds and are cached on disk,
  and the forward and backward of a step are captured once as a CUDA graph and replayed, so a step
  costs the host a handful of launches. Layer 0's item half is computed once per item of the catalogue
  and gathered, not computed once per candidate (NeuMF.score_candidates).
- Users are sharded, not replicated: rank r owns a contiguous range of users holding 1/world_size of
  the positives, trains only on their positives and keeps only their rows of the user table and its
  Adam state. The user-table gradient (85% of the parameters) therefore never crosses the wire: only
  the item table and the MLP (~21 MB) are all-reduced. Each global step sees 1/world_size of its
  positives from each shard (a stratified sample of the same size), and the result is the gradient of
  the same global mean loss.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from models.common.adam import FusedAdam
from models.common.background_checkpoint import BackgroundCheckpoint
from models.common.batching import even_batches
from models.common.checkpoint import resume
from models.common.defaults import few_steps
from models.common.distributed import Dist, all_reduce_sum, sync
from models.common.entrypoint import exit_now, run_trainer
from models.common.events import Events, process_age, rate
from models.common.kernel_cache import use_kernel_cache
from models.common.precision import Precision, resolve_precision
from models.ncf.bundle import write_bundle
from models.ncf.data import NCFData, load_ncf_data
from models.ncf.evaluate import candidate_sums, chunk_sums
from models.ncf.model import NeuMF, NeuMFConfig
from models.ncf.run_state import full_model, load_run_state, run_state, user_shards
from models.ncf.sampler import draw_negatives, permutation
from models.ncf.selection import stop_reason, summarize
from ncflow.rng import stream_key


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30  # NVIDIA's cap; training stops earlier at target_hr
    batch_size: int = 2**20  # global samples (positives + negatives) per step, split across ranks
    lr: float = 0.0045  # Adam settings of NVIDIA's NCF, tuned for the 2^20 batch
    beta1: float = 0.25
    beta2: float = 0.5
    eps: float = 1e-8
    weight_decay: float = 0.0  # L2 on every parameter through Adam (NVIDIA: none); MF needs some
    negatives: int = 4  # per positive, redrawn every epoch
    verified_negatives: bool = False  # False: NVIDIA's unverified "shortcut" (~0.5% false negatives)
    precision: str = "auto"  # fp32 | tf32 | bf16 | fp16; auto: bf16 on GPUs, fp32 on CPUs
    target_hr: float = 0.9562  # HR@10 that ends training: the MLPerf/NVIDIA ml-20m target
    patience: int = 0  # stop after this many epochs without a better selection HR@10; 0: never
    topk: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cuda | cpu
    cuda_graphs: bool = True  # replay each step's forward+backward as one CUDA graph (GPUs; not fp16)
    eval_users_per_chunk: int = 32768  # evaluation chunk: (users, 1+K) candidates at a time
    architecture: str = "neumf"  # neumf | mf: GMF alone, a dot product (Rendle et al. 2020's strong baseline)
    mf_dim: int = 64
    mlp_layers: tuple[int, ...] = (256, 256, 128, 64)  # ignored by mf
    dropout: float = 0.5  # after each MLP ReLU: ignored by mf

    def __post_init__(self) -> None:
        checks = {
            "epochs must be >= 1": self.epochs >= 1,
            "batch-size must be >= 2": self.batch_size >= 2,
            "lr must be > 0": self.lr > 0,
            "negatives must be >= 1": self.negatives >= 1,
            "precision must be auto, fp32, tf32, bf16 or fp16": self.precision
            in ("auto", "fp32", "tf32", "bf16", "fp16"),
            "device must be auto, cuda or cpu": self.device in ("auto", "cuda", "cpu"),
            "target-hr must be in (0, 1]": 0 < self.target_hr <= 1,
            "eval-users-per-chunk must be >= 1": self.eval_users_per_chunk >= 1,
            "patience must be >= 0": self.patience >= 0,
            "weight-decay must be >= 0": self.weight_decay >= 0,
            "architecture must be neumf or mf": self.architecture in ("neumf", "mf"),
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
    """One rank's shard of the model, its optimizer, and the captured step."""

    def __init__(self, cfg: TrainConfig, data: NCFData, d: Dist, precision: Precision):
        self.cfg, self.data, self.d, self.precision = cfg, data, d, precision
        self.xp = array_module(d.device)
        self.shards = user_shards(data.train_user, data.n_users, d.world_size)
        self.user_lo, self.user_hi, pos_lo, pos_hi = self.shards[d.rank]
        layers = () if cfg.architecture == "mf" else cfg.mlp_layers  # () is NeuMF's GMF branch alone
        self.model_config = NeuMFConfig(data.n_users, data.n_items, cfg.mf_dim, layers, cfg.dropout)
        # The same initial weights on every rank and for every world size: the whole model is drawn
        # from the seed, then a rank keeps its users' rows. (Not on the meta device: initialising
        # there imports torch._dynamo, seconds of start-up.)
        torch.manual_seed(cfg.seed)
        with torch.device(d.device):
            self.model = NeuMF(self.model_config)
        if d.enabled:
            rows = self.model.user_embed.weight.detach()[self.user_lo : max(self.user_hi, self.user_lo + 1)]
            self.model.user_embed = torch.nn.Embedding.from_pretrained(rows.clone(), freeze=False)
        self.user_table = self.model.user_embed.weight
        self.replicated = [q for q in self.model.parameters() if q is not self.user_table]
        self.optimizer = FusedAdam(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision.loss_scaling)
        # This rank's positives (user ids local to the shard). Equal step counts on every rank: the
        # smallest shard sets them; larger shards leave their few extra positives to later epochs.
        self.local_user = (data.train_user[pos_lo:pos_hi] - self.user_lo).contiguous()
        self.local_item = data.train_item[pos_lo:pos_hi].contiguous()
        smallest = min(hi - lo for _, _, lo, hi in self.shards)
        per_rank = max(1, cfg.batch_size // d.world_size // (1 + cfg.negatives))
        self.batch_positives, self.steps = even_batches(smallest, per_rank)
        b, c = self.batch_positives, 1 + cfg.negatives
        self.labels = torch.zeros(b, c, device=d.device)
        self.labels[:, 0] = 1.0  # column 0 the positive
        self.users_in = torch.zeros(b, dtype=torch.int32, device=d.device)  # the step's inputs: the
        self.items_in = torch.zeros(b, c, dtype=torch.int32, device=d.device)  # graph reads these
        self.graph: torch.cuda.CUDAGraph | None = None
        self.use_graph = cfg.cuda_graphs and d.device.type == "cuda" and not precision.loss_scaling
        self.eval_sums = chunk_sums(self.model, precision, cfg.topk)
        self.checkpoints = BackgroundCheckpoint(d.device)
        self.best: dict | None = None  # {"epoch", "value", "model": this rank's weights} (validation)
        # This rank's test (and validation) users, as local rows of its user table, with their candidates.
        self.test_local, self.test_candidates = self.owned(data.test_user, data.candidates)
        if data.has_validation:
            self.valid_local, self.valid_candidates = self.owned(data.valid_user, data.valid_candidates)

    def owned(self, users: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(local user rows, candidates) of the held-out rows whose users this rank's shard holds."""
        mine = (users >= self.user_lo) & (users < self.user_hi)
        return (users[mine] - self.user_lo).contiguous(), candidates[mine].contiguous()

    # ------------------------------------------------------------------------------------- the step
    def forward_backward(self) -> torch.Tensor:
        """Loss of the step held in users_in/items_in, and its gradients in .grad (not accumulated).

        The loss is this rank's mean over world_size: summed over ranks, the gradients are those of
        the global mean, for the replicated parameters after the all-reduce and for user rows as is.
        """
        with self.precision.autocast(self.d.device):
            logits = self.model(self.users_in, self.items_in)  # (B, 1+k)
        loss = F.binary_cross_entropy_with_logits(logits.float(), self.labels) / self.d.world_size
        self.scaler.scale(loss).backward()
        return loss.detach()

    def capture(self) -> None:
        """Record forward+backward once as a CUDA graph (after warm-up launches on a side stream)."""
        self.model.train()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.optimizer.zero_grad(set_to_none=True)
                self.forward_backward()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        self.first_steps_done = time.perf_counter()  # kernels loaded (or compiled): the rest is capture
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.graph_loss = self.forward_backward()  # gradients land in static .grad tensors

    def step(self, key: int) -> torch.Tensor:
        self.model.noise.fill_(key & 0xFFFFFFFF)
        if self.graph is not None:
            self.graph.replay()
            loss = self.graph_loss.clone()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.forward_backward()
        self.all_reduce_gradients()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def all_reduce_gradients(self) -> None:
        """Sum the replicated parameters' gradients over ranks: one flat ~21 MB all-reduce."""
        if not self.d.enabled:
            return
        grads = [q.grad for q in self.replicated]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        torch._foreach_copy_(
            grads, [v.view_as(g) for v, g in zip(flat.split([g.numel() for g in grads]), grads)]
        )

    # ------------------------------------------------------------------------------------ the epoch
    def epoch_samples(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's users (S*B,) (local ids) and their items (S*B, 1+k): positive, then negatives."""
        xp, cfg, d = self.xp, self.cfg, self.d
        n = self.steps * self.batch_positives
        order = permutation(xp, len(self.local_user), seed=cfg.seed, epoch=epoch, rank=d.rank)[:n]
        users = xp.from_dlpack(self.local_user)[order]  # (n,)
        items = xp.from_dlpack(self.local_item)[order]
        verify = xp.from_dlpack(self.data.train_keys) if cfg.verified_negatives else None
        negatives = draw_negatives(
            xp, users + self.user_lo, self.data.n_items, negatives=cfg.negatives, seed=cfg.seed, epoch=epoch,
            rank=d.rank, verify_keys=verify,
        )  # (k, n)  # fmt: skip
        rows = xp.concatenate([items[None, :], negatives.astype(items.dtype)]).T  # (n, 1+k)
        return torch.from_dlpack(users), torch.from_dlpack(xp.ascontiguousarray(rows))

    def train_epoch(self, epoch: int) -> float:
        users, items = self.epoch_samples(epoch)
        self.model.train()
        b = self.batch_positives
        loss_sum = torch.zeros((), device=self.d.device)
        for step in range(self.steps):
            self.users_in.copy_(users[step * b : (step + 1) * b])
            self.items_in.copy_(items[step * b : (step + 1) * b])
            # Dropout's mask: a pure function of (seed, epoch, step, rank), so a resumed epoch replays it.
            loss_sum += self.step(stream_key(self.cfg.seed, epoch, step, self.d.rank))
        return float(all_reduce_sum(loss_sum / self.steps))

    def evaluate(self) -> tuple[float, float]:
        """HR@k and NDCG@k over the test users: each rank scores those it owns."""
        return self.hit_ndcg(self.test_local, self.test_candidates, len(self.data.test_user))

    def validate(self) -> tuple[float, float]:
        """HR@k and NDCG@k over the validation users: each rank scores those it owns."""
        return self.hit_ndcg(self.valid_local, self.valid_candidates, len(self.data.valid_user))

    def hit_ndcg(self, local: torch.Tensor, candidates: torch.Tensor, n_rows: int) -> tuple[float, float]:
        self.model.eval()
        sums = candidate_sums(self.eval_sums, candidates, self.cfg.eval_users_per_chunk, local)
        hr, ndcg = (all_reduce_sum(sums) / max(1, n_rows)).tolist()
        return hr, ndcg

    def keep_if_best(self, epoch: int, value: float) -> bool:
        """Copy this rank's weights when `value` beats the best so far (on the device: no transfer)."""
        if self.best is not None and value <= self.best["value"]:
            return False
        weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.best = {"epoch": epoch, "value": value, "model": weights}
        return True

    def restore_best(self) -> None:
        """Load the kept weights in place (the captured step's tensors keep their addresses)."""
        if self.best is not None:
            self.model.load_state_dict(self.best["model"])

    def warm_up(self) -> None:
        """Compile the training step's kernels and capture it before the clock starts; weights stay
        untouched."""
        start = time.perf_counter()
        b = self.batch_positives
        self.users_in.copy_(self.local_user[:b].expand(b) if len(self.local_user) >= b else self.users_in)
        self.items_in.copy_(self.local_item[:b, None].expand(b, self.items_in.shape[1]))
        if self.use_graph:
            self.capture()
        elif self.d.device.type == "cuda":
            self.forward_backward()
        self.optimizer.zero_grad(set_to_none=self.graph is None)
        sync(self.d.device)
        self.warm_phases = {"step_s": time.perf_counter() - start}
        if self.graph is not None:
            self.warm_phases["first_steps_s"] = self.first_steps_done - start
        # Evaluation's kernels load at the first evaluation: nothing the first step needs waits for them.

    def save(self, out: Path, epoch: int, history: list[dict], on_saved=None) -> None:
        """Checkpoint in the background (models/common/background_checkpoint.py): the next epoch trains
        while the state is copied and written. While the previous checkpoint is still being written this
        one is skipped (a retry then resumes from that one): on fast epochs, writing every epoch would
        make the disk the bottleneck."""
        busy = torch.tensor(float(self.checkpoints.busy()), device=self.d.device)
        if float(all_reduce_sum(busy)):  # every rank decides alike: the gathers below are collective
            return
        state = run_state(self, epoch, history)
        if self.d.is_main:
            self.checkpoints.write(out, state, None if on_saved is None else lambda: on_saved(epoch))


def train(cfg: TrainConfig, data_dir: Path, out: Path, d: Dist) -> dict:
    events = Events(d.is_main)
    phases = {"imported": process_age()}  # where start-up goes, in seconds since the process began
    precision = resolve_precision(cfg.precision, d.device)
    use_kernel_cache()
    sync(d.device)
    phases["device_ready"] = process_age()
    data = load_ncf_data(data_dir, d.device)
    sync(d.device)
    phases["data_loaded"] = process_age()
    trainer = Trainer(cfg, data, d, precision)
    sync(d.device)
    phases["model_built"] = process_age()
    start_epoch, history = resume(out, trainer, load=load_run_state)
    if start_epoch:
        events.emit("resume", epoch=start_epoch)
    events.emit(
        "start", config=dataclasses.asdict(cfg), precision=precision.name, world_size=d.world_size,
        parameters=trainer.model.get_num_params(), users=data.n_users, items=data.n_items,
        train_positives=len(data.train_user), steps_per_epoch=trainer.steps, device=str(d.device),
        process_s=process_age(), phases=phases,
    )  # fmt: skip
    if warning := few_steps(trainer.steps, cfg.batch_size, "samples"):
        events.say(warning)
    warm_start = time.perf_counter()
    trainer.warm_up()
    sync(d.device)
    events.emit(
        "ready",
        warm_up_s=time.perf_counter() - warm_start,
        phases=trainer.warm_phases,
        process_s=process_age(),
    )
    events.say(
        f"kernels ready and step captured in {time.perf_counter() - warm_start:.1f}s"
        if trainer.graph is not None else f"eager mode ({d.device.type})"
    )  # fmt: skip

    validating = data.has_validation
    prefix = "valid_" if validating else ""  # the selection metric: validation HR@10, else test HR@10
    key = f"{prefix}hr@10"
    done = stop_reason(history, key, cfg.target_hr, cfg.patience) is not None
    for epoch in range(start_epoch, cfg.epochs):
        if done:
            break
        sync(d.device)
        t0 = time.perf_counter()
        loss = trainer.train_epoch(epoch)
        sync(d.device)
        t1 = time.perf_counter()
        hr, ndcg = trainer.validate() if validating else trainer.evaluate()
        sync(d.device)
        t2 = time.perf_counter()
        samples = trainer.steps * trainer.batch_positives * (1 + cfg.negatives) * d.world_size
        scored = data.valid_candidates if validating else data.candidates
        record = {
            "epoch": epoch, "loss": loss, key: hr, f"{prefix}ndcg@10": ndcg,
            "train_seconds": t1 - t0, "eval_seconds": t2 - t1,
            "train_samples_per_s": samples / (t1 - t0),
            "eval_samples_per_s": scored.numel() / (t2 - t1),
        }  # fmt: skip
        history.append(record)
        if validating:
            trainer.keep_if_best(epoch, hr)
        done = stop_reason(history, key, cfg.target_hr, cfg.patience) is not None
        if not done and epoch + 1 < cfg.epochs:  # the last epoch ends in the bundle, not a checkpoint
            trainer.save(out, epoch, history, lambda e: events.emit("checkpoint", epoch=e))
        events.emit("epoch", **record)
        events.say(
            f"epoch {epoch:3d}  loss {loss:.4f}  {prefix}HR@{cfg.topk} {hr:.4f}  {prefix}NDCG@{cfg.topk} {ndcg:.4f}  "
            f"{rate(record['train_samples_per_s'], 'samples')}  {t1 - t0:.2f}s + eval {t2 - t1:.2f}s"
        )
    summary = summarize(history, cfg.target_hr, key)
    summary["stopped"] = stop_reason(history, key, cfg.target_hr, cfg.patience) or "epochs"
    if validating and history:
        trainer.restore_best()
        best = trainer.best["epoch"]
        test_hr, test_ndcg = trainer.evaluate()  # test, once, on the selected weights
        chosen = next(h for h in history if h["epoch"] == best)
        summary |= {
            "hr@10": test_hr, "ndcg@10": test_ndcg, "valid_hr@10": chosen["valid_hr@10"],
            "valid_ndcg@10": chosen["valid_ndcg@10"], "weights_epoch": best,
        }  # fmt: skip
        events.say(
            f"kept the weights of epoch {best} (best valid HR@{cfg.topk} {chosen['valid_hr@10']:.4f}); "
            f"test HR@{cfg.topk} {test_hr:.4f}  NDCG@{cfg.topk} {test_ndcg:.4f}"
        )
    elif history:
        summary["weights_epoch"] = history[-1]["epoch"]
    model = full_model(trainer)  # collective
    trainer.checkpoints.wait()
    if d.is_main:
        bundle = write_bundle(out / "bundle", model, trainer.model_config, cfg, data_dir, summary)
        summary["bundle"] = str(bundle)
    summary["process_s"] = process_age()
    events.emit("done", **summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_trainer(
        "python -m models.ncf.train",
        __doc__.split("\n")[0],
        TrainConfig,
        train,
        "a folder written by `ncflow data`",
        argv,
        config_dir="ncf",
        batch_units=lambda manifest, cfg: manifest["counts"]["train_positives"] * (1 + cfg["negatives"]),
    )


if __name__ == "__main__":
    exit_now(main())
