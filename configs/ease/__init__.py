"""The parameters of the `ease-train` flow: one pydantic model, defaults per dataset in `configs/ease/<dataset>.yaml`.

Loading, precedence (class defaults < the dataset's YAML < the caller's values; None = not given) and
validation are configs.train.TrainParams'; this module adds EASE's settings and the choice of split.

    EASETrainParams.for_dataset("ml-100k", protocol="vaecf").train_config()
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from configs import PreprocessConfig
from configs.train import TrainParams

EASE_CONFIG_DIR = Path(__file__).resolve().parent

# Fields handed to the trainer as flags (models.ease.train.TrainConfig has the same names).
TRAIN_FIELDS = ("lambdas", "lambda_without_validation", "eval_users_per_chunk")


class EASETrainParams(TrainParams):
    """Everything one `ease-train` run needs; validated before any work starts."""

    FLOW = "ease-train"
    CONFIG_DIR = EASE_CONFIG_DIR
    TRAIN_FIELDS = TRAIN_FIELDS

    protocol: Literal["ncf", "vaecf"] = Field(
        default="ncf",
        description="the split: ncf (leave latest out, NeuMF's; the `best` alias compares on it) or "
        "vaecf (held-out users, Mult-VAE's)",
    )  # registered as `ease` or `ease-vaecf`: their scores are not comparable
    lambdas: tuple[float, ...] = Field(
        default=(50.0, 100.0, 200.0, 500.0, 1000.0),
        min_length=1,
        description="L2 weights tried on validation",
    )
    lambda_without_validation: float = Field(
        default=200.0, gt=0, description="the one lambda fitted on an ncf split without validation"
    )
    eval_users_per_chunk: int = Field(default=1024, ge=1)
    # Preprocessing
    validation: bool = Field(
        default=True, description="ncf split: hold out each user's second-latest item to pick lambda on"
    )  # and the champion rule uses validation; the vaecf split always holds out validation users
    test_negatives: int = Field(default=100, ge=1)  # ncf split: per test user (sampled HR@10)
    heldout_users: int = Field(default=10_000, ge=1)  # vaecf split: validation and test users each

    @field_validator("lambdas")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if min(value) <= 0:
            raise ValueError("every lambda must be > 0")
        return value

    @model_validator(mode="after")
    def _one_device(self) -> EASETrainParams:
        if self.gpus > 1 or self.cpu_processes > 1 or self.nodes > 1:
            raise ValueError("EASE is one solve on one device: use gpus 0 or 1, cpu_processes 1 and nodes 1")
        return self

    def preprocess_config(self) -> PreprocessConfig:
        if self.protocol == "vaecf":
            return PreprocessConfig(
                protocol="vaecf", heldout_users=self.heldout_users, **self.source_settings()
            )
        return PreprocessConfig(
            protocol="ncf",
            test_negatives=self.test_negatives,
            validation=self.validation,
            **self.source_settings(),
        )
