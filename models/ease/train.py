"""Fit EASE on a processed dataset of either protocol: lambda picked on validation, test scored once, a bundle.

    python -m models.ease.train --data DIR --out DIR                          # GPU if any, else the CPU
    python -m models.ease.train --data DIR --out DIR --lambdas 100,200,500 --device cpu
    python -m models.ease.train --data DIR --out DIR --lambda-without-validation 300   # a folder without one

The folder's manifest says the split: the NCF one (leave latest out; `ncflow data D --validation` to pick
lambda on each user's second-latest item) or the VAE-CF one (held-out users, fold-in -> targets).
Imports torch, numpy and pyarrow only, and speaks models.common.events like the other trainers:
stdout carries one JSON object per event (start, one `epoch` per lambda tried, done), stderr progress.
So the flow's epoch table and learning curve show validation against lambda, and the model card the
chosen one (`weights_epoch`).

Steps: the Gram matrix XᵀX once (dense GEMMs over chunks of users), then per lambda one Cholesky
solve of an items x items system (models/ease/model.py), then validation. Nothing to resume: a retry
starts again (seconds on a GPU, a minute for ml-20m's 20k items on CPUs). One process: under torchrun
the main rank does the work and the others wait.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from models.common.distributed import Dist, sync
from models.common.entrypoint import exit_now, run_trainer
from models.common.events import Events
from models.common.heldout import load_splits
from models.ease.evaluate import SELECT, choose_lambda, heldout_metrics
from models.ease.model import ease_scorer, gram


@dataclass(frozen=True)
class TrainConfig:
    lambdas: tuple[float, ...] = (
        50.0,
        100.0,
        200.0,
        500.0,
        1000.0,
    )  # tried on validation; Steck: 500 on ml-20m
    lambda_without_validation: float = 200.0  # an NCF folder made without --validation: nothing to pick on
    device: str = "auto"  # auto | cuda | cpu
    eval_users_per_chunk: int = 1024  # (users, items) scores at a time

    def __post_init__(self) -> None:
        checks = {
            "lambdas must be given, each > 0": bool(self.lambdas) and min(self.lambdas) > 0,
            "lambda-without-validation must be > 0": self.lambda_without_validation > 0,
            "device must be auto, cuda or cpu": self.device in ("auto", "cuda", "cpu"),
            "eval-users-per-chunk must be >= 1": self.eval_users_per_chunk >= 1,
        }
        bad = [message for message, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(bad))


def train(cfg: TrainConfig, data_dir: Path, out: Path, d: Dist) -> dict:
    events = Events(d.is_main)
    if not d.is_main:  # one solve on one device: the other ranks have nothing to do
        return {}
    start = time.perf_counter()
    splits = load_splits(data_dir, d.device)
    key = f"valid_{SELECT[splits.protocol]}"
    events.emit(
        "start", config=dataclasses.asdict(cfg), world_size=1, device=str(d.device), precision="fp32",
        protocol=splits.protocol, parameters=splits.n_items**2, items=splits.n_items,
        train_users=splits.train.rows, train_positives=len(splits.train.indices),
        valid_users=splits.valid.rows if splits.valid else 0, test_users=splits.test.rows,
    )  # fmt: skip
    if splits.valid is None:
        events.say(f"no validation split: lambda {cfg.lambda_without_validation} (lambda-without-validation)")
    t0 = time.perf_counter()
    g = gram(splits.train, splits.n_items)
    sync(d.device)
    gram_seconds = time.perf_counter() - t0
    events.say(f"Gram matrix {splits.n_items:,} x {splits.n_items:,} in {gram_seconds:.2f}s on {d.device}")

    def report(record: dict) -> None:
        events.emit("epoch", **record)
        shown = f"  {key} {record[key]:.4f}" if key in record else ""
        events.say(
            f"lambda {record['lambda']:g}  loss {record['loss']:.4f}{shown}  "
            f"{record['train_seconds']:.2f}s + eval {record['eval_seconds']:.2f}s"
        )

    chosen = choose_lambda(splits, g, cfg.lambdas, cfg.lambda_without_validation, on_record=report)
    del g
    picked = chosen.history[chosen.index]
    test = heldout_metrics(ease_scorer(chosen.b, splits.test.inputs), splits.test, splits.protocol)
    events.say(
        f"kept lambda {chosen.lam:g} (epoch {chosen.index})"
        + (f": best {key} {picked[key]:.4f}" if key in picked else "")
        + "; test "
        + "  ".join(f"{k} {v:.4f}" for k, v in test.items() if k != "full_users")
    )
    summary = {
        "epochs": len(chosen.history), "lambda": chosen.lam, "weights_epoch": chosen.index,
        "best_epoch": chosen.index, **{k: v for k, v in picked.items() if k.startswith("valid_")},
        **test, "gram_seconds": gram_seconds,
        "train_seconds": gram_seconds + sum(h["train_seconds"] for h in chosen.history),
        "seconds": time.perf_counter() - start, "loss": picked["loss"],
    }  # fmt: skip
    from models.ease.bundle import write_bundle

    metrics = {**summary, "history": chosen.history}
    summary["bundle"] = str(
        write_bundle(out / "bundle", chosen.b, chosen.lam, splits.protocol, cfg, data_dir, metrics)
    )
    events.emit("done", **summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    return run_trainer(
        "python -m models.ease.train",
        __doc__.split("\n")[0],
        TrainConfig,
        train,
        "a folder written by `ncflow data` (either protocol)",
        argv,
        config_dir="ease",
        batch_units=lambda manifest, cfg: 0,  # no batches
    )


if __name__ == "__main__":
    exit_now(main())
