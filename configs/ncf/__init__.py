"""The parameters of the `ncf-train` flow: one pydantic model, defaults per dataset in `configs/ncf/<dataset>.yaml`.

Loading, precedence (class defaults < the dataset's YAML < the caller's values; None = not given) and
validation are configs.train.TrainParams'; this module adds NeuMF's trainer fields.

    NCFTrainParams.for_dataset("synth-tiny", epochs=3).train_config()
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from configs import PreprocessConfig
from configs.train import TrainParams

NCF_CONFIG_DIR = Path(__file__).resolve().parent

# Fields handed to the trainer as flags (models.ncf.train.TrainConfig has the same names).
TRAIN_FIELDS = (
    "epochs", "batch_size", "lr", "beta1", "beta2", "eps", "weight_decay", "negatives", "verified_negatives",
    "precision", "target_hr", "patience", "seed", "cuda_graphs", "architecture", "mf_dim", "mlp_layers", "dropout",
)  # fmt: skip


class NCFTrainParams(TrainParams):
    """Everything one `ncf-train` run needs; validated before any work starts."""

    FLOW = "ncf-train"
    CONFIG_DIR = NCF_CONFIG_DIR
    TRAIN_FIELDS = TRAIN_FIELDS

    # Training (TrainConfig's fields; the defaults are NVIDIA's ML-20M recipe)
    epochs: int = Field(default=30, ge=1)  # NVIDIA's cap; training stops earlier at target_hr
    # None: the dataset's preset, or without one sized to the data by the trainer
    # (models/common/defaults.py: a batch of at least 50 steps per epoch, its lr and Adam's usual betas).
    # The trainer's own defaults, NVIDIA's 2^20 / 0.0045 / (0.25, 0.5), are configs/ncf/ml-20m.yaml.
    batch_size: int | None = Field(
        default=None,
        ge=2,
        description="global samples per step (default: the preset's, else sized to the data)",
    )  # split across processes
    lr: float | None = Field(
        default=None, gt=0, description="Adam's learning rate (default: the preset's, else from the batch)"
    )
    beta1: float | None = Field(default=None, ge=0, lt=1)
    beta2: float | None = Field(default=None, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)  # L2 through Adam (torch.optim.Adam's); NVIDIA: none
    negatives: int = Field(default=4, ge=1)  # per positive, redrawn every epoch on the device
    verified_negatives: bool = False  # False: NVIDIA's unverified shortcut (~0.5% false negatives)
    precision: Literal["auto", "fp32", "tf32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs, fp32 on CPUs
    target_hr: float = Field(default=0.9562, gt=0, le=1)  # MLPerf's ML-20M HR@10; 1.0 never stops early
    patience: int = Field(
        default=0, ge=0
    )  # stop after this many epochs without a better selection HR@10; 0: never
    seed: int = Field(default=0, ge=0)
    cuda_graphs: bool = True  # replay each step as one CUDA graph on GPUs; ignored on CPUs and with fp16
    architecture: Literal["neumf", "mf"] = Field(
        default="neumf",
        description="neumf, or mf: GMF alone (a dot product), Rendle et al.'s strong baseline",
    )  # mf ignores mlp_layers and dropout
    mf_dim: int = Field(default=64, ge=1)
    mlp_layers: tuple[int, ...] = Field(default=(256, 256, 128, 64), min_length=1)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    # Preprocessing
    test_negatives: int = Field(default=100, ge=1)  # per test user, as in the NCF paper and MLPerf
    validation: bool = Field(
        default=False, description="hold out each user's second-latest item: select (stop, promote) on it"
    )  # off: NVIDIA's protocol, where the test set is also the stopping signal
    holdout: Literal["latest", "temporal"] = Field(
        default="latest",
        description="latest: each user's latest item is test; temporal: train before cutoff, test the window after",
    )
    cutoff: dt.date | None = Field(
        default=None, description="temporal: the first test day (default: horizon_days before the data's end)"
    )
    horizon_days: int = Field(
        default=7, ge=1, description="temporal: days of interactions after the cutoff to test on"
    )

    @field_validator("mlp_layers")
    @classmethod
    def _positive_layers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value):
            raise ValueError("every MLP layer needs at least one unit")
        return value

    @model_validator(mode="after")
    def _even_mlp(self) -> NCFTrainParams:
        if self.mlp_layers[0] % 2:  # the first layer is the user and item embeddings side by side
            raise ValueError(f"mlp_layers[0] must be even (user and item halves), got {self.mlp_layers[0]}")
        return self

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(
            protocol="ncf",
            test_negatives=self.test_negatives,
            validation=self.validation,
            holdout=self.holdout,
            cutoff=self.cutoff,
            horizon_days=self.horizon_days,
            **self.source_settings(),
        )


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """The YAML preset of `dataset` ({} for datasets without one, e.g. a local file)."""
    return NCFTrainParams.dataset_defaults(dataset)
