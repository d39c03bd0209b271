"""Dropout whose noise is one random byte per element, drawn by an eager kernel the compiler cannot see.

Inside torch.compile, dropout runs a Philox generator per element in the forward kernel and again in
the backward (the mask is recomputed, not stored). Drawing bytes with ATen's vectorised generator is a
pure memory write, and thresholding a byte is one compare. The drop probability becomes a multiple of
1/256 (0.5 exactly; 0.1 -> 26/256): see `effective_p`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.library.custom_op("ncflow::random_bytes", mutates_args=())
def random_bytes(like: Tensor) -> Tensor:
    """Uniform uint8 noise shaped like `like`, from the default generator of its device."""
    return torch.randint(0, 256, like.shape, dtype=torch.uint8, device=like.device)


@random_bytes.register_fake
def _(like: Tensor) -> Tensor:
    return torch.empty_like(like, dtype=torch.uint8)


class ByteDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.threshold = round(p * 256)  # a byte below it drops its element
        self.scale = 256.0 / (256 - self.threshold) if self.threshold < 256 else 0.0

    @property
    def effective_p(self) -> float:
        return self.threshold / 256

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        keep = random_bytes(x.detach()) >= self.threshold
        return torch.where(keep, x * self.scale, torch.zeros_like(x))
