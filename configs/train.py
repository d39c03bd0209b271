"""What every training flow's parameters share: one pydantic base, defaults per dataset in YAML.

A model's parameter class (configs.ncf.NCFTrainParams, configs.vaecf.VAECFTrainParams) adds its
trainer's fields and names its YAML folder, its trainer fields and its preprocessing; loading,
precedence, validation and the error messages live here once.

Precedence, lowest first: the class defaults, the dataset's YAML file (`<CONFIG_DIR>/<dataset>.yaml`),
then what the caller passes (CLI flags, Prefect parameters). A `None` from the caller means "not
given". Unknown keys and wrong types are errors, in the YAML files as much as from callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import yaml
from pydantic import Field, ValidationError

from configs import PreprocessConfig, validation_message
from configs.source import SourceParams
from ncflow.errors import NcflowError


class TrainParams(SourceParams):
    """The fields and behaviour common to all training flows (the data's come from SourceParams);
    subclasses set the ClassVars."""

    FLOW: ClassVar[str]  # the flow's name, for error messages
    CONFIG_DIR: ClassVar[Path]  # the per-dataset YAML defaults
    TRAIN_FIELDS: ClassVar[tuple[str, ...]]  # handed to the trainer as flags (its TrainConfig's names)

    # Hardware
    gpus: int = Field(default=0, ge=0, description="torchrun processes on GPUs; 0 trains on CPUs")
    cpu_processes: int = Field(default=1, ge=1, le=64, description="CPU processes when gpus is 0")
    # Where things go (relative paths are relative to the working directory of the run)
    force: bool = Field(
        default=False,
        description="retrain even when a registered model was trained on the same data, settings and code",
    )
    data_dir: str = "data"
    runs_dir: str = "runs"  # checkpoints: runs/<flow run id>/ so a retried task resumes
    registry_dir: str = "registry"
    keep_versions: int = Field(
        default=5, ge=1, le=100_000,
        description="registered versions kept per model and dataset (newest), besides the champion and the "
        "best; older ones and the folders of finished runs are pruned after each registration",
    )  # fmt: skip
    # --- Several machines (issue 19; ncflow/nodes.py): one torchrun agent per node on a Dask worker,
    # joined by torchrun's c10d rendezvous. data_dir and runs_dir must then be on a shared disk.
    nodes: int = Field(
        default=1, ge=1, le=1024,
        description="machines; above 1, one torchrun agent per Dask worker, gpus (or cpu_processes) each",
    )  # fmt: skip
    scheduler: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9+]*://\S+$",
        description="tcp://HOST:PORT of the Dask cluster whose workers are the nodes (none: a local one)",
    )  # fmt: skip
    rendezvous_timeout: int = Field(
        default=600, ge=1, description="seconds the nodes wait for each other before the run fails"
    )
    # --- end of the several-machines block

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> Self:
        """The dataset's defaults with `overrides` on top (None values ignored); NcflowError if invalid."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**{**cls.dataset_defaults(dataset), **given, "dataset": dataset})
        except ValidationError as err:
            raise NcflowError(f"bad {cls.FLOW} parameter: {validation_message(err)}") from None

    @classmethod
    def dataset_defaults(cls, dataset: str) -> dict[str, Any]:
        """The YAML preset of `dataset` ({} for datasets without one, e.g. a local file)."""
        path = cls.CONFIG_DIR / f"{dataset}.yaml"
        if "/" in dataset or not path.is_file():
            return {}
        values = yaml.safe_load(path.read_text()) or {}
        unknown = sorted(set(values) - set(cls.model_fields) | ({"dataset"} & set(values)))
        if unknown:
            raise NcflowError(f"{path}: unknown keys {', '.join(unknown)}")
        return values

    @property
    def device(self) -> str:
        return "cuda" if self.gpus > 0 else "cpu"

    @property
    def processes(self) -> int:
        return self.gpus if self.gpus > 0 else self.cpu_processes

    def node_settings(self) -> dict[str, Any]:
        """train_model's multi-node arguments."""
        return {
            "nodes": self.nodes,
            "scheduler": self.scheduler,
            "rendezvous_timeout": self.rendezvous_timeout,
        }

    def train_config(self) -> dict[str, Any]:
        """The trainer's settings (its TrainConfig's field names), device included. A None (batch size,
        lr, betas on a dataset without a preset) is left out: the trainer sizes it to the data, the
        same rule as run by hand (models/common/defaults.py)."""
        given = {name: getattr(self, name) for name in self.TRAIN_FIELDS}
        return {k: v for k, v in given.items() if v is not None} | {"device": self.device}

    def preprocess_config(self) -> PreprocessConfig:
        raise NotImplementedError
