"""The fused operations of NeuMF's training step: Triton kernels on GPUs, torch twins on CPUs.

Why hand-written: torch.compile fused these well but cost about a minute of compilation on a new
worker (measured 2026-11-22: 85 s to a trained model cold, against the reference's 19 s). A few small
Triton kernels compile in seconds, cache on disk (`ncflow.kernel_cache`), and do less work:

- `gather_rows`: an embedding lookup that writes the compute dtype (bf16) directly and whose backward
  is one pass of fp32 atomic adds into the dense table gradient (no sort, no fp32 copy of the rows).
- `linear_relu_dropout` / `relu_dropout`: ReLU then dropout, with the mask drawn from a counter-based
  hash of (step key, layer, element). The backward needs no mask at all: an element has a gradient
  exactly when its output is nonzero (kept and positive), so backward reads the output it saved for the
  next layer anyway. Nothing is recomputed (the compiler re-ran Philox in the backward: 35% of the
  step). `linear_relu_dropout`'s backward also sums the bias gradient in the same pass.
- `gather_add_relu_dropout`: layer 0, whose item half W_i @ e_item is computed once per item of the
  catalogue (27k on ml-20m) instead of once per candidate (1M a step) and gathered, fused with the user
  half's add, ReLU and dropout; its backward sums the user half's gradient and scatters the item half's
  per item in one pass, without writing dx.
- `gmf_logit`: the GMF branch and its half of the final layer, sum_k u[b, k] i[b, c, k] w[k], as one
  kernel forward and one backward: the (B, C, mf) product is never written, and the backward's three
  gradients come from one read of the item rows (eager torch: a product, a GEMV, then an outer product,
  a product, a reduction and a GEMV in the backward, each a full pass over (B, C, mf)).

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
    """The backward of relu_dropout: dy * scale where the output was nonzero."""
    return torch.where(y != 0, dy.float() * scale, torch.zeros((), device=y.device)).to(y.dtype)


def gmf_logit_twin(u: Tensor, i: Tensor, w: Tensor) -> Tensor:
    """sum_k u[b, k] * w[k] * i[b, c, k] in fp32, in the dtype of i."""
    uw = u.float() * w.float()
    return (i.float() * uw[:, None, :]).sum(-1).to(i.dtype)


def gmf_logit_grad_twin(g: Tensor, u: Tensor, i: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(grad u, grad i, grad w) of gmf_logit_twin for the upstream gradient g (B, C)."""
    g = g.float()
    gi = (g[..., None] * i.float()).sum(1)  # (B, K): sum_c g[b, c] i[b, c, k], shared by grad u and w
    grad_i = (g[..., None] * (u.float() * w.float())[:, None, :]).to(i.dtype)
    return (gi * w.float()).to(u.dtype), grad_i, (gi * u.float()).sum(0).to(w.dtype)


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
    def _relu_dropout_kernel(x_ptr, y_ptr, key_ptr, n, salt, threshold, scale, BLOCK: tl.constexpr):
        """y = dropout(relu(x)), flattened: every layer width shares one binary."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        v = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        keep = v > 0
        if threshold > 0:
            key = tl.load(key_ptr).to(tl.uint32)
            base = _hash32(key + salt.to(tl.uint32))
            h = _hash32(offs.to(tl.uint32) * 0x9E3779B1 + base)
            keep = keep & ((h >> 8) >= threshold)
        y = tl.where(keep, v * scale, 0.0)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _masked_grad_kernel(dy_ptr, y_ptr, dx_ptr, n, scale, BLOCK: tl.constexpr):
        """dx = dy * scale where the output was nonzero: ReLU's and dropout's masks at once."""
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        y = tl.load(y_ptr + offs, mask=inside, other=0.0)
        dy = tl.load(dy_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        dx = tl.where(y != 0, dy * scale, 0.0)
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=inside)

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

    @triton.jit
    def _gmf_logit_kernel(u_ptr, i_ptr, w_ptr, out_ptr, rows, group, K, BR: tl.constexpr, BK: tl.constexpr):
        """out[b, c] = sum_k u[b, k] * w[k] * i[b, c, k] in fp32: the GMF branch and its share of the
        final layer, so the (B, C, K) product is never written (nor read back by a GEMV)."""
        b = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        k = tl.arange(0, BK)
        inside = (b < rows)[:, None] & (k < K)[None, :]
        w = tl.load(w_ptr + k, mask=k < K, other=0.0).to(tl.float32)
        uw = tl.load(u_ptr + b[:, None] * K + k[None, :], mask=inside, other=0.0).to(tl.float32) * w[None, :]
        for j in range(group):
            row = b * group + j
            v = tl.load(i_ptr + row[:, None] * K + k[None, :], mask=inside, other=0.0).to(tl.float32)
            tl.store(out_ptr + row, tl.sum(v * uw, axis=1).to(out_ptr.dtype.element_ty), mask=b < rows)

    @triton.jit
    def _gmf_logit_grad_kernel(
        g_ptr, u_ptr, i_ptr, w_ptr, u_grad_ptr, i_grad_ptr, w_grad_ptr, rows, group, K,
        BR: tl.constexpr, BK: tl.constexpr,
    ):  # fmt: skip
        """All three gradients of _gmf_logit_kernel in one pass over i: grad i = g u w; grad u and
        grad w both from s[b, k] = sum_c g[b, c] i[b, c, k] (w's as fp32 atomic adds of block sums)."""
        b = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        k = tl.arange(0, BK)
        inside = (b < rows)[:, None] & (k < K)[None, :]
        own = b[:, None] * K + k[None, :]  # (b, k) in u and in its gradient
        w = tl.load(w_ptr + k, mask=k < K, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + own, mask=inside, other=0.0).to(tl.float32)
        uw = u * w[None, :]
        s = tl.zeros((BR, BK), dtype=tl.float32)
        for j in range(group):
            row = b * group + j
            at = row[:, None] * K + k[None, :]
            g = tl.load(g_ptr + row, mask=b < rows, other=0.0).to(tl.float32)[:, None]
            tl.store(i_grad_ptr + at, (g * uw).to(i_grad_ptr.dtype.element_ty), mask=inside)
            s += g * tl.load(i_ptr + at, mask=inside, other=0.0).to(tl.float32)
        tl.store(u_grad_ptr + own, (s * w[None, :]).to(u_grad_ptr.dtype.element_ty), mask=inside)
        tl.atomic_add(w_grad_ptr + k, tl.sum(s * u, axis=0), mask=k < K, sem="relaxed")

    @triton.jit
    def _gather_kernel(
        table_ptr, index_ptr, a_ptr, b_ptr, rows,
        D: tl.constexpr, SPLIT: tl.constexpr, WIDTH: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr,
    ):  # fmt: skip
        """Rows of table (N, D) at index, columns [0, SPLIT) into a, [SPLIT, WIDTH) into b."""
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        c = tl.arange(0, BD)
        live = (r < rows)[:, None]
        src = tl.load(index_ptr + r, mask=r < rows, other=0).to(tl.int64)
        v = tl.load(table_ptr + src[:, None] * D + c[None, :], mask=live & (c < WIDTH)[None, :], other=0.0)
        tl.store(
            a_ptr + r[:, None] * SPLIT + c[None, :],
            v.to(a_ptr.dtype.element_ty),
            mask=live & (c < SPLIT)[None, :],
        )
        if SPLIT < WIDTH:
            at = r[:, None] * (WIDTH - SPLIT) + (c[None, :] - SPLIT)
            tl.store(
                b_ptr + at, v.to(b_ptr.dtype.element_ty), mask=live & ((c >= SPLIT) & (c < WIDTH))[None, :]
            )

    @triton.jit
    def _scatter_add_kernel(
        a_ptr, b_ptr, index_ptr, table_grad_ptr, rows,
        D: tl.constexpr, SPLIT: tl.constexpr, WIDTH: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr,
    ):  # fmt: skip
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        c = tl.arange(0, BD)
        live = (r < rows)[:, None]
        dst = tl.load(index_ptr + r, mask=r < rows, other=0).to(tl.int64)
        g = tl.load(a_ptr + r[:, None] * SPLIT + c[None, :], mask=live & (c < SPLIT)[None, :], other=0.0).to(
            tl.float32
        )
        if SPLIT < WIDTH:
            at = r[:, None] * (WIDTH - SPLIT) + (c[None, :] - SPLIT)
            g += tl.load(b_ptr + at, mask=live & ((c >= SPLIT) & (c < WIDTH))[None, :], other=0.0).to(
                tl.float32
            )
        tl.atomic_add(
            table_grad_ptr + dst[:, None] * D + c[None, :], g, mask=live & (c < WIDTH)[None, :], sem="relaxed"
        )

    @triton.jit
    def _gather_add_relu_dropout_kernel(
        p_ptr, item_ptr, hu_ptr, y_ptr, key_ptr, rows, salt, threshold, scale, C,
        W: tl.constexpr, BR: tl.constexpr, BW: tl.constexpr,
    ):  # fmt: skip
        """y = dropout(relu(p[item] + hu)) over (B*C rows, W): layer 0 with its item half read from the
        per-item table p (n_items, W). The mask is _relu_dropout_kernel's, element for element (the
        same flat counter), and each row's item id and user row are computed once, not per element."""
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)  # rows b * C + c
        w = tl.arange(0, BW)
        live = (r < rows)[:, None] & (w < W)[None, :]
        item = tl.load(item_ptr + r, mask=r < rows, other=0).to(tl.int64)
        v = tl.load(p_ptr + item[:, None] * W + w[None, :], mask=live, other=0.0).to(tl.float32)
        v += tl.load(hu_ptr + (r // C)[:, None] * W + w[None, :], mask=live, other=0.0).to(tl.float32)
        offs = r[:, None] * W + w[None, :]
        keep = v > 0
        if threshold > 0:
            key = tl.load(key_ptr).to(tl.uint32)
            base = _hash32(key + salt.to(tl.uint32))
            h = _hash32(offs.to(tl.uint32) * 0x9E3779B1 + base)
            keep = keep & ((h >> 8) >= threshold)
        y = tl.where(keep, v * scale, 0.0)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _gather_add_grad_kernel(
        dy_ptr, y_ptr, item_ptr, dhu_ptr, dp_ptr, rows, scale, C, W: tl.constexpr, BR: tl.constexpr,
        BW: tl.constexpr,
    ):  # fmt: skip
        """The backward of the above in one pass, without writing dx: for each (b, c) row,
        dx = dy * scale where y != 0; dhu[b] = sum over c of dx; dp[item] += dx (fp32 atomics)."""
        b = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        w = tl.program_id(1) * BW + tl.arange(0, BW)
        live = (b < rows)[:, None] & (w < W)[None, :]
        total = tl.zeros((BR, BW), dtype=tl.float32)
        for c in range(0, C):
            row = b * C + c
            at = row[:, None] * W + w[None, :]
            y = tl.load(y_ptr + at, mask=live, other=0.0)
            dy = tl.load(dy_ptr + at, mask=live, other=0.0).to(tl.float32)
            dx = tl.where(y != 0, dy * scale, 0.0)
            total += dx
            item = tl.load(item_ptr + row, mask=b < rows, other=0).to(tl.int64)
            tl.atomic_add(dp_ptr + item[:, None] * W + w[None, :], dx, mask=live, sem="relaxed")
        tl.store(dhu_ptr + b[:, None] * W + w[None, :], total.to(dhu_ptr.dtype.element_ty), mask=live)


ELEMENTWISE_BLOCK = 4096
GATHER_ROWS = 32
GRAD_ROWS, GRAD_COLS = 32, 128  # _gather_add_grad_kernel's tile: (users, columns)


def _launch_relu_dropout(x: Tensor, key: Tensor, layer: int, p: float) -> Tensor:
    threshold, scale = dropout_threshold(p)
    y = torch.empty_like(x)
    n = x.numel()
    _relu_dropout_kernel[(triton.cdiv(n, ELEMENTWISE_BLOCK),)](
        x, y, key, n, layer_salt(layer), threshold, scale, BLOCK=ELEMENTWISE_BLOCK, num_warps=8
    )
    return y


def _launch_masked_grad(dy: Tensor, y: Tensor, scale: float) -> Tensor:
    dx = torch.empty_like(y)
    n = y.numel()
    _masked_grad_kernel[(triton.cdiv(n, ELEMENTWISE_BLOCK),)](
        dy.contiguous(), y, dx, n, scale, BLOCK=ELEMENTWISE_BLOCK, num_warps=8
    )
    return dx


class _ReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, key: Tensor, layer: int, p: float) -> Tensor:
        x = x.contiguous()
        y = _launch_relu_dropout(x, key, layer, p) if use_triton(x) else relu_dropout_twin(x, key, layer, p)
        ctx.save_for_backward(y)
        ctx.scale = dropout_threshold(p)[1]
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        dx = _launch_masked_grad(dy, y, ctx.scale) if use_triton(y) else masked_grad_twin(dy, y, ctx.scale)
        return dx, None, None, None


def relu_dropout(x: Tensor, key: Tensor, layer: int, p: float, training: bool) -> Tensor:
    """dropout(relu(x)) with the mask of (key, layer); relu alone when not training or p == 0."""
    return _ReluDropout.apply(x, key, layer, p if training else 0.0)


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


GMF_ROWS = 32


def _launch_gmf_logit(u: Tensor, i: Tensor, w: Tensor) -> Tensor:
    rows, group, k = i.shape
    out = torch.empty(rows, group, dtype=i.dtype, device=i.device)
    _gmf_logit_kernel[(triton.cdiv(rows, GMF_ROWS),)](
        u, i, w, out, rows, group, k, BR=GMF_ROWS, BK=triton.next_power_of_2(k), num_warps=4
    )
    return out


def _launch_gmf_logit_grad(g: Tensor, u: Tensor, i: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    rows, group, k = i.shape
    u_grad, i_grad = torch.empty_like(u), torch.empty_like(i)
    w_grad = torch.zeros(k, dtype=torch.float32, device=i.device)
    _gmf_logit_grad_kernel[(triton.cdiv(rows, GMF_ROWS),)](
        g.contiguous(), u, i, w, u_grad, i_grad, w_grad, rows, group, k,
        BR=GMF_ROWS, BK=triton.next_power_of_2(k), num_warps=4,
    )  # fmt: skip
    return u_grad, i_grad, w_grad.to(w.dtype)


class _GmfLogit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u: Tensor, i: Tensor, w: Tensor) -> Tensor:
        u, i, w = u.contiguous(), i.contiguous(), w.contiguous()
        ctx.save_for_backward(u, i, w)
        return _launch_gmf_logit(u, i, w) if use_triton(i) else gmf_logit_twin(u, i, w)

    @staticmethod
    def backward(ctx, g: Tensor):
        u, i, w = ctx.saved_tensors
        return _launch_gmf_logit_grad(g, u, i, w) if use_triton(i) else gmf_logit_grad_twin(g, u, i, w)


def gmf_logit(u: Tensor, i: Tensor, w: Tensor) -> Tensor:
    """(u[:, None, :] * i) @ w for u (B, K), i (B, C, K), w (K,): the GMF branch through its half of the
    final layer, (B, C) in the dtype of i, summed in fp32; gradients reach all three."""
    return _GmfLogit.apply(u, i, w)


class _GatherRows(torch.autograd.Function):
    """Columns [0, width) of table's rows at index, as two outputs split at `split`."""

    @staticmethod
    def forward(
        ctx, table: Tensor, index: Tensor, dtype: torch.dtype, split: int, width: int
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(index)
        ctx.shape, ctx.split, ctx.width = table.shape, split, width
        d = table.shape[1]
        if not use_triton(table):
            rows = torch.nn.functional.embedding(index, table[:, :width]).to(dtype)
            return rows[..., :split].contiguous(), rows[..., split:].contiguous()
        flat = index.reshape(-1).contiguous()
        a = torch.empty(*index.shape, split, dtype=dtype, device=table.device)
        b = torch.empty(*index.shape, width - split, dtype=dtype, device=table.device)
        _gather_kernel[(triton.cdiv(flat.numel(), GATHER_ROWS),)](
            table, flat, a, b, flat.numel(), D=d, SPLIT=split, WIDTH=width, BR=GATHER_ROWS,
            BD=triton.next_power_of_2(width), num_warps=4,
        )  # fmt: skip
        return a, b

    @staticmethod
    def backward(ctx, grad_a: Tensor | None, grad_b: Tensor | None):
        (index,) = ctx.saved_tensors
        split, width, (n_rows, d) = ctx.split, ctx.width, ctx.shape
        device = (grad_a if grad_a is not None else grad_b).device
        lead = index.shape
        if grad_a is None:
            grad_a = torch.zeros(*lead, split, device=device)
        if grad_b is None:
            grad_b = torch.zeros(*lead, width - split, device=device)
        flat = index.reshape(-1).contiguous()
        table_grad = torch.zeros(n_rows, d, dtype=torch.float32, device=device)
        if use_triton(table_grad):
            _scatter_add_kernel[(triton.cdiv(flat.numel(), GATHER_ROWS),)](
                grad_a.contiguous(), grad_b.contiguous(), flat, table_grad, flat.numel(), D=d, SPLIT=split,
                WIDTH=width, BR=GATHER_ROWS, BD=triton.next_power_of_2(width), num_warps=4,
            )  # fmt: skip
        else:
            n = flat.numel()
            rows = torch.cat([grad_a.reshape(n, split), grad_b.reshape(n, width - split)], dim=1).float()
            table_grad[:, :width].index_add_(0, flat.long(), rows)
        return table_grad, None, None, None, None


def gather_split(
    table: Tensor, index: Tensor, split: int, dtype: torch.dtype | None = None, width: int | None = None
) -> tuple[Tensor, Tensor]:
    """(table[index][..., :split], table[index][..., split:width]) as two contiguous tensors in `dtype`
    (width: default all columns); gradients reach `table` in fp32. Two outputs, so the backward needs
    no zero-filled slice copies."""
    return _GatherRows.apply(
        table, index, dtype or table.dtype, split, table.shape[1] if width is None else width
    )


def gather_rows(
    table: Tensor, index: Tensor, dtype: torch.dtype | None = None, width: int | None = None
) -> Tensor:
    """table[index][..., :width] cast to `dtype` (default the table's); the gradient reaches `table` in fp32."""
    width = table.shape[1] if width is None else width
    return gather_split(table, index, width, dtype, width)[0]


class _GatherAddReluDropout(torch.autograd.Function):
    """Layer 0 of NeuMF with its item half computed per item instead of per candidate.

    W_i @ e_item is the same for every candidate that is item i, and a step has 40 times more
    candidates (1M) than ml-20m has items (27k). So p = W_i @ E_items^T is one small GEMM, and this op
    gathers its rows: y = dropout(relu(p[items] + hu[:, None])). The (B, C, W) pre-activation, the
    item half's gathered embeddings and its two backward GEMMs over 1M rows are gone; the backward
    is one pass that sums dhu over the candidates and scatters dp per item (fp32 atomics), and the
    small GEMMs of p's own backward give the weight's and the item table's gradients.
    """

    @staticmethod
    def forward(ctx, p: Tensor, items: Tensor, hu: Tensor, key: Tensor, layer: int, drop: float) -> Tensor:
        ctx.hu_dtype = hu.dtype
        items, hu, p = items.contiguous(), hu.to(p.dtype).contiguous(), p.contiguous()
        if use_triton(p):
            threshold, scale = dropout_threshold(drop)
            y = torch.empty(*items.shape, p.shape[1], dtype=p.dtype, device=p.device)
            rows, width = items.numel(), p.shape[1]
            block_w = triton.next_power_of_2(width)
            block_r = max(1, ELEMENTWISE_BLOCK // block_w)
            _gather_add_relu_dropout_kernel[(triton.cdiv(rows, block_r),)](
                p, items, hu, y, key, rows, layer_salt(layer), threshold, scale, items.shape[1],
                W=width, BR=block_r, BW=block_w, num_warps=8,
            )  # fmt: skip
        else:
            y = relu_dropout_twin(p[items.long()], key, layer, drop, hu)
        ctx.save_for_backward(y, items)
        ctx.scale, ctx.n_items, ctx.p_dtype = dropout_threshold(drop)[1], p.shape[0], p.dtype
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        y, items = ctx.saved_tensors
        (b, c, w), dy = y.shape, dy.contiguous()
        dp = torch.zeros(ctx.n_items, w, dtype=torch.float32, device=y.device)
        if use_triton(y):
            dhu = torch.empty(b, w, dtype=ctx.hu_dtype, device=y.device)
            grid = (triton.cdiv(b, GRAD_ROWS), triton.cdiv(w, GRAD_COLS))
            _gather_add_grad_kernel[grid](
                dy, y, items, dhu, dp, b, ctx.scale, c, W=w, BR=GRAD_ROWS, BW=GRAD_COLS, num_warps=4
            )
        else:
            dx = torch.where(y != 0, dy.float() * ctx.scale, torch.zeros((), device=y.device))
            dhu = dx.sum(dim=1).to(ctx.hu_dtype)
            dp.index_add_(0, items.reshape(-1).long(), dx.reshape(-1, w))
        return dp.to(ctx.p_dtype), None, dhu, None, None, None


def gather_add_relu_dropout(
    p: Tensor, items: Tensor, hu: Tensor, key: Tensor, layer: int, drop: float, training: bool
) -> Tensor:
    """dropout(relu(p[items] + hu[:, None, :])) for p (n_items, W), items (B, C), hu (B, W), in p's
    dtype; relu alone when not training."""
    return _GatherAddReluDropout.apply(p, items, hu, key, layer, drop if training else 0.0)
