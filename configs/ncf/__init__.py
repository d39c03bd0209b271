"""The parameters of the `ncf-train` flow: one pydantic model, defaults per dataset in `configs/ncf/<dataset>.yaml`.

Precedence, lowest first: the class defaults below (NVIDIA's ML-20M recipe), the dataset's YAML file,
then what the caller passes (CLI flags, Prefect parameters). A `None` from the caller means "not
given". Unknown keys and wrong types are errors, in the YAML files as much as from callers.

    NCFTrainParams.for_dataset("synth-tiny", epochs=3).train_flags()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from configs import PreprocessConfig, Strict, validation_message
from ncflow.errors import NcflowError

NCF_CONFIG_DIR = Path(__file__).resolve().parent

# Fields handed to the trainer as flags (models.ncf.train.TrainConfig has the same names).
TRAIN_FIELDS = (
    "epochs", "batch_size", "lr", "beta1", "beta2", "eps", "negatives", "verified_negatives", "precision",
    "target_hr", "seed", "compile", "mf_dim", "mlp_layers", "dropout",
)  # fmt: skip


class NCFTrainParams(Strict):
    """Everything one `ncf-train` run needs; validated before any work starts."""

    dataset: str = Field(
        description="ml-100k | ml-1m | ml-20m | ml-25m | synth-<preset> | a CSV/Parquet path"
    )
    source: str | None = Field(default=None, description="a mirror URL, a local archive, or a folder")
    # Hardware
    gpus: int = Field(default=0, ge=0, description="torchrun processes on GPUs; 0 trains on CPUs")
    cpu_processes: int = Field(default=1, ge=1, le=64, description="CPU processes when gpus is 0")
    # Training (TrainConfig's fields; the defaults are NVIDIA's ML-20M recipe)
    epochs: int = Field(default=30, ge=1)  # NVIDIA's cap; training stops earlier at target_hr
    batch_size: int = Field(default=2**20, ge=2)  # global samples per step, split across processes
    lr: float = Field(default=0.0045, gt=0)
    beta1: float = Field(default=0.25, ge=0, lt=1)  # NVIDIA's unusual betas go with the 2^20 batch
    beta2: float = Field(default=0.5, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    negatives: int = Field(default=4, ge=1)  # per positive, redrawn every epoch on the device
    verified_negatives: bool = False  # False: NVIDIA's unverified shortcut (~0.5% false negatives)
    precision: Literal["auto", "fp32", "tf32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs, fp32 on CPUs
    target_hr: float = Field(default=0.9562, gt=0, le=1)  # MLPerf's ML-20M HR@10; 1.0 never stops early
    seed: int = Field(default=0, ge=0)
    compile: bool = True  # torch.compile on GPUs; ignored on CPUs
    mf_dim: int = Field(default=64, ge=1)
    mlp_layers: tuple[int, ...] = Field(default=(256, 256, 128, 64), min_length=1)
    dropout: float = Field(default=0.5, ge=0, lt=1)
    # Preprocessing
    test_negatives: int = Field(default=100, ge=1)  # per test user, as in the NCF paper and MLPerf
    # Where things go (relative paths are relative to the working directory of the run)
    data_dir: str = "data"
    runs_dir: str = "runs"  # checkpoints: runs/<flow run id>/ so a retried task resumes
    registry_dir: str = "registry"

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        from ncflow.data.sources import known_datasets

        if value in known_datasets() or Path(value).is_file():
            return value
        raise ValueError(
            f"unknown dataset {value!r}: use one of {', '.join(known_datasets())}, or a CSV/Parquet path"
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

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> NCFTrainParams:
        """The dataset's defaults with `overrides` on top (None values ignored); NcflowError if invalid."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**{**dataset_defaults(dataset), **given, "dataset": dataset})
        except ValidationError as err:
            raise NcflowError(f"bad ncf-train parameter: {validation_message(err)}") from None

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    @property
    def processes(self) -> int:
        return self.gpus if self.gpus > 0 else self.cpu_processes

    def train_config(self) -> dict[str, Any]:
        """The trainer's settings (TrainConfig's field names), device included."""
        return {name: getattr(self, name) for name in TRAIN_FIELDS} | {"device": self.device}

    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(protocol="ncf", test_negatives=self.test_negatives)


def dataset_defaults(dataset: str) -> dict[str, Any]:
    """The YAML preset of `dataset` ({} for datasets without one, e.g. a local file)."""
    path = NCF_CONFIG_DIR / f"{dataset}.yaml"
    if "/" in dataset or not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(values) - set(NCFTrainParams.model_fields) | ({"dataset"} & set(values)))
    if unknown:
        raise NcflowError(f"{path}: unknown keys {', '.join(unknown)}")
    return values
