"""The parameters of the `vae-cf-train` flow: one pydantic model, defaults per dataset in `configs/vaecf/<dataset>.yaml`.

Loading, precedence (class defaults < the dataset's YAML < the caller's values; None = not given) and
validation are configs.train.TrainParams' (shared with ncf-train); this module adds Mult-VAE's
trainer fields. The class defaults are NVIDIA's VAE-CF recipe for ML-20M (DeepLearningExamples),
except the epoch count: 200, not NVIDIA's 400 (see configs/vaecf/ml-20m.yaml).

    VAECFTrainParams.for_dataset("synth-tiny", epochs=3).train_config()
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from configs import PreprocessConfig
from configs.train import TrainParams

VAECF_CONFIG_DIR = Path(__file__).resolve().parent

# Fields handed to the trainer as flags (models.vaecf.train.TrainConfig has the same names).
TRAIN_FIELDS = (
    "epochs", "batch_size", "lr", "beta1", "beta2", "eps", "anneal", "precision", "seed", "compile",
    "checkpoint_every", "eval_users_per_chunk", "hidden", "latent", "dropout",
)  # fmt: skip


class VAECFTrainParams(TrainParams):
    """Everything one `vae-cf-train` run needs; validated before any work starts."""

    FLOW = "vae-cf-train"
    CONFIG_DIR = VAECF_CONFIG_DIR
    TRAIN_FIELDS = TRAIN_FIELDS

    # Training (TrainConfig's fields; the defaults are NVIDIA's ML-20M recipe)
    epochs: int = Field(default=200, ge=1)  # every epoch runs: VAE-CF has no early-stopping target
    # None: the dataset's preset, or without one sized to the data by the trainer
    # (models/common/defaults.py). The trainer's own defaults, NVIDIA's, are configs/vaecf/ml-20m.yaml.
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="global users per step (default: the preset's, else sized to the data)",
    )  # split across processes
    lr: float | None = Field(
        default=None, gt=0, description="Adam's learning rate (default: the preset's, else from the batch)"
    )
    beta1: float | None = Field(default=None, ge=0, lt=1)
    beta2: float | None = Field(default=None, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    anneal: Literal["nvidia", "paper", "none"] = "nvidia"  # KL weight: nvidia cap 0.1, paper 0.2
    precision: Literal["auto", "fp32", "tf32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs, fp32 on CPUs
    seed: int = Field(default=0, ge=0)
    compile: bool = True  # torch.compile on GPUs; ignored on CPUs
    checkpoint_every: int = Field(default=1, ge=1)  # epochs; a retry resumes after the last checkpoint
    eval_users_per_chunk: int = Field(default=4096, ge=1)
    hidden: int = Field(default=600, ge=1)
    latent: int = Field(default=200, ge=1)
    dropout: float = Field(default=0.5, ge=0, lt=1)  # on the input
    # Preprocessing
    protocol: Literal["vaecf", "ncf"] = Field(
        default="vaecf",
        description="the split: vaecf (held-out users, the paper's) or ncf (leave latest out, with "
        "validation: NeuMF's and EASE's, where the `best` alias compares models)",
    )  # registered as `vae-cf` or `vae-cf-ncf`: their scores are not comparable
    heldout_users: int = Field(
        default=10_000, ge=1
    )  # validation and test users each (scaled down on small data)

    def preprocess_config(self) -> PreprocessConfig:
        if self.protocol == "ncf":  # the folder ncf-train and ease-train use with validation
            return PreprocessConfig(protocol="ncf", validation=True, **self.source_settings())
        return PreprocessConfig(protocol="vaecf", heldout_users=self.heldout_users, **self.source_settings())
