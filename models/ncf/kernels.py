"""The fused operations of NeuMF's training step: Triton kernels on GPUs, torch twins on CPUs.

Why hand-written: torch.compile fused these well but cost about a minute of compilation on a new
worker (measured 2026-11-22: 85 s to a trained model cold, against the reference's 19 s). A few small
Triton kernels compile in seconds, cache on disk (`ncflow.kernel_cache`), and do less work. This module
holds what they share (Triton's import, the dropout hash) and the dropout ops; the others are in
models/ncf/gather_kernels.py (embedding gathers, layer 0 from per-item rows) and models/ncf/gmf_kernel.py
(the GMF branch); full ranking's scorer is models/ncf/score_kernel.py.

- `linear_relu_dropout`: a linear layer, then ReLU and dropout, with the mask drawn from a
  counter-based hash of (step key, layer, element). The backward needs no mask at all: an element has
  a gradient exactly when its output is nonzero (kept and positive), so backward reads the output it
  saved for the next layer anyway. Nothing is recomputed (the compiler re-ran Philox in the backward:
  35% of the step). The same pass also sums the bias gradient.

Each op has one torch twin that computes the same function on any device (masks bit for bit: the same
hash; values up to fp32 summation order and bf16 rounding), used on CPUs and in CI, and checked
against the kernels on the GPU (bench/ncf_kernel_check.py) and under Triton's interpreter
(TRITON_INTERPRET=1) on CPUs.
"""

from __future__ import annotations

import os
import threading

import torch
from torch import Tensor

from models.common.kernel_cache import use_kernel_cache

use_kernel_cache()  # before Triton reads its cache location
try:  # Triton ships with CUDA builds of torch; the CPU build (CI) runs the twins
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def _hash_triton_early() -> None:
    """Triton keys its kernel cache by a hash of its own 500 MB library, computed on a process's first
    launch: 0.35 s of a warm start on the GPU machine. Hashing releases the GIL, so a thread started
    at import does it while the trainer initialises CUDA and loads its data."""
    key = getattr(getattr(getattr(triton, "runtime", None), "cache", None), "triton_key", None)
    if key is not None and torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        threading.Thread(target=key, name="triton-key", daemon=True).start()


if triton is not None:
    _hash_triton_early()

MASK32 = 0xFFFFFFFF
GOLDEN32 = 0x9E3779B1  # 2^32 / golden ratio: spreads consecutive counters before hashing
LAYER32 = 0x632BE5AB  # separates the layers' streams within one step


def layer_salt(layer: int) -> int:
    """A per-layer constant in [2, 2^31): a plain int32 kernel argument (Triton would fold 0 and 1)."""
    return ((layer + 1) * LAYER32) & 0x7FFFFFFF


def use_triton(t: Tensor) -> bool:
    """Kernels on CUDA tensors; under TRITON_INTERPRET=1 (tests) on CPU tensors too."""
    if triton is None:
        return False
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def dropout_threshold(p: float) -> tuple[int, float]:
    """(drop below this 24-bit value, scale of kept elements): p is quantised to 1/2^24."""
    threshold = round(p * (1 << 24))
    return threshold, (1.0 / (1.0 - threshold / (1 << 24)) if threshold < (1 << 24) else 0.0)


# ---------------------------------------------------------------------------------------------- twins
def hash32(x: Tensor) -> Tensor:
    """lowbias32 (C. Wellons) on int64 tensors holding uint32 values; wraps like uint32 arithmetic."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def keep_mask(shape: torch.Size, key: Tensor, layer: int, threshold: int, device) -> Tensor:
    """The dropout mask of one layer for one step: True where the element is kept."""
    base = hash32((key.to(device).long() + layer_salt(layer)) & MASK32)
    counter = torch.arange(shape.numel(), device=device, dtype=torch.int64).view(shape)
    return (hash32(counter * GOLDEN32 + base) >> 8) >= threshold


def relu_dropout_twin(x: Tensor, key: Tensor, layer: int, p: float, extra: Tensor | None = None) -> Tensor:
    threshold, scale = dropout_threshold(p)
    v = x.float() if extra is None else x.float() + extra.float().unsqueeze(-2)
    keep = v > 0
    if threshold:
        keep &= keep_mask(x.shape, key, layer, threshold, x.device)
    return torch.where(keep, v * scale, torch.zeros_like(v)).to(x.dtype)


def masked_grad_twin(dy: Tensor, y: Tensor, scale: float) -> Tensor:
    """The backward of ReLU then dropout: dy * scale where the output was nonzero."""
    return torch.where(y != 0, dy.float() * scale, torch.zeros((), device=y.device)).to(y.dtype)


# --------------------------------------------------------------------------------------------- kernels
if triton is not None:

    @triton.jit
    def _hash32(x):
        x = x ^ (x >> 16)
        x = x * 0x7FEB352D
        x = x ^ (x >> 15)
        x = x * 0x846CA68B
        return x ^ (x >> 16)

    @triton.jit
    def _relu_dropout(v, offs, key_ptr, salt, threshold, scale):
        """dropout(relu(v)) in fp32, element `offs` of the flat layer: the mask every kernel shares
        (keep_mask, bit for bit)."""
        keep = v > 0
        if threshold > 0:
            key = tl.load(key_ptr).to(tl.uint32)
            base = _hash32(key + salt.to(tl.uint32))
            h = _hash32(offs.to(tl.uint32) * 0x9E3779B1 + base)
            keep = keep & ((h >> 8) >= threshold)
        return tl.where(keep, v * scale, 0.0)

    @triton.jit
    def _relu_dropout_kernel(x_ptr, y_ptr, key_ptr, n, salt, threshold, scale, BLOCK: tl.constexpr):
        """y = dropout(relu(x)), flattened: every layer width shares one binary."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        v = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        y = _relu_dropout(v, offs, key_ptr, salt, threshold, scale)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _masked_grad_colsum_kernel(
        dy_ptr, y_ptr, dx_ptr, bias_grad_ptr, rows, cols, scale, BR: tl.constexpr, BC: tl.constexpr
    ):
        """dx as above for a (rows, cols) matrix, plus its column sums (the bias gradient) in fp32."""
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        inside = (r < rows)[:, None] & (c < cols)[None, :]
        at = r[:, None] * cols + c[None, :]
        y = tl.load(y_ptr + at, mask=inside, other=0.0)
        dy = tl.load(dy_ptr + at, mask=inside, other=0.0).to(tl.float32)
        dx = tl.where(y != 0, dy * scale, 0.0)
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=inside)
        tl.atomic_add(bias_grad_ptr + c, tl.sum(dx, axis=0), mask=c < cols, sem="relaxed")


ELEMENTWISE_BLOCK = 4096


def _launch_relu_dropout(x: Tensor, key: Tensor, layer: int, p: float) -> Tensor:
    threshold, scale = dropout_threshold(p)
    y = torch.empty_like(x)
    n = x.numel()
    _relu_dropout_kernel[(triton.cdiv(n, ELEMENTWISE_BLOCK),)](
        x, y, key, n, layer_salt(layer), threshold, scale, BLOCK=ELEMENTWISE_BLOCK, num_warps=8
    )
    return y


def _launch_masked_grad_colsum(dy: Tensor, y: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    rows, cols = y.shape
    dx = torch.empty_like(y)
    bias_grad = torch.zeros(cols, dtype=torch.float32, device=y.device)
    grid = (triton.cdiv(rows, 64), triton.cdiv(cols, 64))
    _masked_grad_colsum_kernel[grid](
        dy.contiguous(), y, dx, bias_grad, rows, cols, scale, BR=64, BC=64, num_warps=4
    )
    return dx, bias_grad


class _LinearReluDropout(torch.autograd.Function):
    """dropout(relu(x @ W.T + b)): the bias rides in the GEMM's epilogue, and the backward's one
    elementwise pass also sums the bias gradient, so no separate reduction reads the activations."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, key: Tensor, layer: int, p: float) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        w = weight.to(x.dtype)
        pre = torch.addmm(bias.to(x.dtype), x2, w.t())  # (M, out)
        if use_triton(pre):
            y = _launch_relu_dropout(pre, key, layer, p)
        else:
            y = relu_dropout_twin(pre, key, layer, p)
        ctx.save_for_backward(x2, w, y)
        ctx.scale = dropout_threshold(p)[1]
        ctx.shape, ctx.weight_dtype = x.shape, weight.dtype
        return y.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x2, w, y = ctx.saved_tensors
        dy = dy.reshape(y.shape)
        if use_triton(y):
            dpre, bias_grad = _launch_masked_grad_colsum(dy, y, ctx.scale)
        else:
            dpre = masked_grad_twin(dy, y, ctx.scale)
            bias_grad = dpre.float().sum(0)
        dx = (dpre @ w).view(ctx.shape)
        weight_grad = (dpre.t() @ x2).to(ctx.weight_dtype)
        return dx, weight_grad, bias_grad.to(ctx.weight_dtype), None, None, None


def linear_relu_dropout(
    x: Tensor, layer: torch.nn.Linear, key: Tensor, index: int, p: float, training: bool
) -> Tensor:
    """dropout(relu(layer(x))) in the dtype of x (the compute dtype); relu alone when not training."""
    return _LinearReluDropout.apply(x, layer.weight, layer.bias, key, index, p if training else 0.0)
