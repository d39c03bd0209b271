"""Numeric precision of a run: fp32 | tf32 | bf16 | fp16, and what each means on each device."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    name: str
    autocast_dtype: torch.dtype | None  # None: no autocast, weights' own dtype (fp32)
    loss_scaling: bool  # fp16 only: dynamic loss scaling keeps small gradients representable

    def autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """Weights and optimizer state stay fp32 in every mode; only the arithmetic changes."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise SystemExit("error: fp16 needs a CUDA GPU (dynamic loss scaling); on CPUs use fp32 or bf16")
    if device.type == "cuda":
        tf32 = name == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32  # fp32 means fp32: TF32 only when asked for
        torch.backends.cudnn.allow_tf32 = tf32
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    return Precision(name, dtype, loss_scaling=name == "fp16")
