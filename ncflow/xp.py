"""The array-module pattern: one code path for NumPy (CPU) and CuPy (GPU).

Functions take `xp` (the module) and call `xp.sort`, `xp.searchsorted`, ...; `get_xp` picks it.
Arrays reach torch through DLPack, so a CuPy array becomes a CUDA tensor with no copy.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from ncflow.errors import NcflowError

Device = Literal["auto", "cpu", "gpu"]


def cupy_or_none() -> ModuleType | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # no cupy, no driver, no device: all mean "CPU"
        pass
    return None


def get_xp(device: Device = "auto") -> ModuleType:
    """NumPy for "cpu", CuPy for "gpu" (an error if there is none), "auto": CuPy when a GPU is there."""
    if device == "cpu":
        return np
    cp = cupy_or_none()
    if device == "gpu" and cp is None:
        raise NcflowError(
            "device 'gpu' asked for, but CuPy or a CUDA GPU is missing: pip install 'ncflow[gpu]'"
        )
    if device not in ("auto", "gpu"):
        raise NcflowError(f"unknown device {device!r}: use auto, cpu or gpu")
    return cp if cp is not None else np


def xp_of(array: Any) -> ModuleType:
    """The module an array belongs to."""
    if isinstance(array, np.ndarray):
        return np
    import cupy

    return cupy


def to_numpy(array: Any) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.get()


def to_torch(array: Any):
    """A torch tensor sharing memory with `array` (NumPy or CuPy), through DLPack: no copy."""
    import torch

    return torch.from_dlpack(array)
