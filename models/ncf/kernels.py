"""The three fused operations of NeuMF's training step: Triton kernels on GPUs, torch twins on CPUs.

Why hand-written: torch.compile fused these well but cost about a minute of compilation on a new
worker (measured 2026-11-22: 85 s to a trained model cold, against the reference's 19 s). Three small
Triton kernels compile in a few seconds, cache on disk (`ncflow.kernel_cache`), and do less work:

- `gather_rows`: an embedding lookup that writes the compute dtype (bf16) directly and whose backward
  is one pass of fp32 atomic adds into the dense table gradient (no sort, no fp32 copy of the rows).
- `relu_dropout` / `add_relu_dropout`: ReLU then dropout, with the mask drawn from a counter-based hash
  of (step key, layer, element). The backward needs no mask at all: an element has a gradient exactly
  when its output is nonzero (kept and positive), so backward reads the output it saved for the next
  layer anyway. Nothing is recomputed (the compiler re-ran Philox in the backward: 35% of the step).

Each op has one torch twin that computes the same function bit for bit on any device (the same hash),
used on CPUs and in CI, and checked against the kernels on the GPU (bench/gpu_checks.sh) and under
Triton's interpreter (TRITON_INTERPRET=1) on CPUs.

One more kernel serves full ranking rather than training: `mlp_scores`, the MLP branch of NeuMF for
every (user, item) pair of a chunk with all of its layers kept on chip (see its docstring); its twin
is the same arithmetic in torch, and NeuMF.score_items' GEMM formulation is the CPU path. It is
checked against both under the interpreter (tests/test_ncf_score_kernel.py) and on the GPU
(bench/fused_score_check.py): within rounding, not bit for bit (tensor cores sum in their own order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from models.common.kernel_cache import use_kernel_cache

use_kernel_cache()  # before Triton reads its cache location
try:  # Triton ships with CUDA builds of torch; the CPU build (CI) runs the twins
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

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
    def _relu_dropout_kernel(
        x_ptr, extra_ptr, y_ptr, key_ptr, n, salt, threshold, scale, ROW, GROUP,
        HAS_EXTRA: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        """y = dropout(relu(x [+ extra broadcast over GROUP rows of width ROW])), flattened.

        ROW and GROUP are run-time values, so every layer width and candidate count shares one binary.
        """
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < n
        v = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        if HAS_EXTRA:  # x is (B, GROUP, ROW), extra (B, ROW): layer 0's per-user half
            col = offs % ROW
            row = offs // (ROW * GROUP)
            v += tl.load(extra_ptr + row * ROW + col, mask=inside, other=0.0).to(tl.float32)
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
    def _gather_kernel(
        table_ptr, index_ptr, a_ptr, b_ptr, rows,
        D: tl.constexpr, SPLIT: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr,
    ):  # fmt: skip
        """Rows of table (N, D) at index, columns [0, SPLIT) into a, [SPLIT, D) into b."""
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        c = tl.arange(0, BD)
        live = (r < rows)[:, None]
        src = tl.load(index_ptr + r, mask=r < rows, other=0).to(tl.int64)
        v = tl.load(table_ptr + src[:, None] * D + c[None, :], mask=live & (c < D)[None, :], other=0.0)
        tl.store(
            a_ptr + r[:, None] * SPLIT + c[None, :],
            v.to(a_ptr.dtype.element_ty),
            mask=live & (c < SPLIT)[None, :],
        )
        if SPLIT < D:
            at = r[:, None] * (D - SPLIT) + (c[None, :] - SPLIT)
            tl.store(b_ptr + at, v.to(b_ptr.dtype.element_ty), mask=live & ((c >= SPLIT) & (c < D))[None, :])

    @triton.jit
    def _scatter_add_kernel(
        a_ptr, b_ptr, index_ptr, table_grad_ptr, rows,
        D: tl.constexpr, SPLIT: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr,
    ):  # fmt: skip
        r = tl.program_id(0).to(tl.int64) * BR + tl.arange(0, BR)
        c = tl.arange(0, BD)
        live = (r < rows)[:, None]
        dst = tl.load(index_ptr + r, mask=r < rows, other=0).to(tl.int64)
        g = tl.load(a_ptr + r[:, None] * SPLIT + c[None, :], mask=live & (c < SPLIT)[None, :], other=0.0).to(
            tl.float32
        )
        if SPLIT < D:
            at = r[:, None] * (D - SPLIT) + (c[None, :] - SPLIT)
            g += tl.load(b_ptr + at, mask=live & ((c >= SPLIT) & (c < D))[None, :], other=0.0).to(tl.float32)
        tl.atomic_add(
            table_grad_ptr + dst[:, None] * D + c[None, :], g, mask=live & (c < D)[None, :], sem="relaxed"
        )

    @triton.jit
    def _layer(h, w, b, UPCAST: tl.constexpr):
        """relu(h @ w + b): h rounded to w's dtype, products summed in fp32 (tensor cores)."""
        h = h.to(w.dtype)
        if UPCAST:  # the interpreter multiplies bf16 operands as raw bits (Triton 3.9): the same values
            acc = tl.dot(h.to(tl.float32), w.to(tl.float32))
        else:
            acc = tl.dot(h, w)
        return tl.maximum(acc + b[None, :], 0.0)

    @triton.jit
    def _mlp_scores_kernel(
        hi_ptr, hu_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, wf_ptr, out_ptr, n_users, n_items, users_per_program,
        H1: tl.constexpr, H2: tl.constexpr, H3: tl.constexpr, DEPTH: tl.constexpr, HL: tl.constexpr,
        BLOCK_I: tl.constexpr, HOLD: tl.constexpr, UPCAST: tl.constexpr,
    ):  # fmt: skip
        """out[u, i] += MLP logit of (u, i) for BLOCK_I items and a run of users, nothing but out in HBM.

        h = relu(hi[i] + hu[u]) (H1), then DEPTH hidden layers h = relu(h @ W^T + b) as tl.dot (operands
        in the weights' dtype, fp32 accumulation), then h . wf. The weights (W^T, (K, N) row-major) are
        loaded once per program and stay in shared memory; the item tile is read once per user from L1
        (or held in registers: HOLD), and each user adds one row of hu (fp32).
        """
        items = tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)
        live = items < n_items
        k1 = tl.arange(0, H1)
        hi_at = hi_ptr + items[:, None].to(tl.int64) * H1 + k1[None, :]
        if HOLD:
            hi = tl.load(hi_at, mask=live[:, None], other=0.0)
        if DEPTH >= 1:
            k2 = tl.arange(0, H2)
            w1 = tl.load(w1_ptr + k1[:, None] * H2 + k2[None, :])  # (H1, H2)
            b1 = tl.load(b1_ptr + k2)
        if DEPTH >= 2:
            k3 = tl.arange(0, H3)
            w2 = tl.load(w2_ptr + k2[:, None] * H3 + k3[None, :])  # (H2, H3)
            b2 = tl.load(b2_ptr + k3)
        wf = tl.load(wf_ptr + tl.arange(0, HL))
        first = tl.program_id(1) * users_per_program
        hu_at = hu_ptr + first.to(tl.int64) * H1 + k1  # this program's first user; one row on per user
        out_at = out_ptr + first.to(tl.int64) * n_items + items
        for _ in range(tl.minimum(users_per_program, n_users - first)):
            if not HOLD:
                hi = tl.load(hi_at, mask=live[:, None], other=0.0)
            hu = tl.load(hu_at)
            h = tl.maximum(hi.to(tl.float32) + hu[None, :], 0.0)  # (BLOCK_I, H1) fp32
            if DEPTH >= 1:
                h = _layer(h, w1, b1, UPCAST)
            if DEPTH >= 2:
                h = _layer(h, w2, b2, UPCAST)
            logit = tl.sum(h * wf[None, :], axis=1)
            tl.store(out_at, tl.load(out_at, mask=live, other=0.0) + logit, mask=live)
            hu_at += H1
            out_at += n_items


ELEMENTWISE_BLOCK = 4096
GATHER_ROWS = 32


def _launch_relu_dropout(x: Tensor, extra: Tensor | None, key: Tensor, layer: int, p: float) -> Tensor:
    threshold, scale = dropout_threshold(p)
    y = torch.empty_like(x)
    n = x.numel()
    grid = (triton.cdiv(n, ELEMENTWISE_BLOCK),)
    group = x.shape[-2] if extra is not None else 1
    _relu_dropout_kernel[grid](
        x, extra if extra is not None else x, y, key, n, layer_salt(layer), threshold, scale,
        ROW=x.shape[-1], GROUP=group, HAS_EXTRA=extra is not None, BLOCK=ELEMENTWISE_BLOCK, num_warps=8,
    )  # fmt: skip
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
    def forward(ctx, x: Tensor, extra: Tensor | None, key: Tensor, layer: int, p: float) -> Tensor:
        x = x.contiguous()
        if use_triton(x):
            y = _launch_relu_dropout(x, None if extra is None else extra.contiguous(), key, layer, p)
        else:
            y = relu_dropout_twin(x, key, layer, p, extra)
        ctx.save_for_backward(y)
        ctx.scale = dropout_threshold(p)[1]
        ctx.has_extra = extra is not None
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        (y,) = ctx.saved_tensors
        if use_triton(y):
            dx = _launch_masked_grad(dy, y, ctx.scale)
        else:
            dx = torch.where(y != 0, dy.float() * ctx.scale, torch.zeros((), device=y.device)).to(y.dtype)
        d_extra = dx.sum(dim=-2) if ctx.has_extra else None  # (B, C, W) -> (B, W)
        return dx, d_extra, None, None, None


def relu_dropout(x: Tensor, key: Tensor, layer: int, p: float, training: bool) -> Tensor:
    """dropout(relu(x)) with the mask of (key, layer); relu alone when not training or p == 0."""
    return _ReluDropout.apply(x, None, key, layer, p if training else 0.0)


def add_relu_dropout(x: Tensor, extra: Tensor, key: Tensor, layer: int, p: float, training: bool) -> Tensor:
    """dropout(relu(x + extra[:, None, :])) for x (B, C, W), extra (B, W): layer 0's two halves."""
    return _ReluDropout.apply(x, extra, key, layer, p if training else 0.0)


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
            y = _launch_relu_dropout(pre, None, key, layer, p)
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
            dpre = torch.where(y != 0, dy.float() * ctx.scale, torch.zeros((), device=y.device)).to(y.dtype)
            bias_grad = dpre.float().sum(0)
        dx = (dpre @ w).view(ctx.shape)
        weight_grad = (dpre.t() @ x2).to(ctx.weight_dtype)
        return dx, weight_grad, bias_grad.to(ctx.weight_dtype), None, None, None


def linear_relu_dropout(
    x: Tensor, layer: torch.nn.Linear, key: Tensor, index: int, p: float, training: bool
) -> Tensor:
    """dropout(relu(layer(x))) in the dtype of x (the compute dtype); relu alone when not training."""
    return _LinearReluDropout.apply(x, layer.weight, layer.bias, key, index, p if training else 0.0)


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor, dtype: torch.dtype, split: int) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(index)
        ctx.rows, ctx.split = table.shape[0], split
        d = table.shape[1]
        if not use_triton(table):
            rows = torch.nn.functional.embedding(index, table).to(dtype)
            return rows[..., :split].contiguous(), rows[..., split:].contiguous()
        flat = index.reshape(-1).contiguous()
        a = torch.empty(*index.shape, split, dtype=dtype, device=table.device)
        b = torch.empty(*index.shape, d - split, dtype=dtype, device=table.device)
        _gather_kernel[(triton.cdiv(flat.numel(), GATHER_ROWS),)](
            table, flat, a, b, flat.numel(), D=d, SPLIT=split, BR=GATHER_ROWS, BD=triton.next_power_of_2(d),
            num_warps=4,
        )  # fmt: skip
        return a, b

    @staticmethod
    def backward(ctx, grad_a: Tensor | None, grad_b: Tensor | None):
        (index,) = ctx.saved_tensors
        split = ctx.split
        device = (grad_a if grad_a is not None else grad_b).device
        lead = index.shape
        if grad_a is None:
            grad_a = torch.zeros(*lead, split, device=device)
        if grad_b is None:
            grad_b = torch.zeros(*lead, 0, device=device)
        d = split + grad_b.shape[-1]
        flat = index.reshape(-1).contiguous()
        table_grad = torch.zeros(ctx.rows, d, dtype=torch.float32, device=device)
        if use_triton(table_grad):
            _scatter_add_kernel[(triton.cdiv(flat.numel(), GATHER_ROWS),)](
                grad_a.contiguous(), grad_b.contiguous(), flat, table_grad, flat.numel(), D=d, SPLIT=split,
                BR=GATHER_ROWS, BD=triton.next_power_of_2(d), num_warps=4,
            )  # fmt: skip
        else:
            n = flat.numel()
            rows = torch.cat([grad_a.reshape(n, split), grad_b.reshape(n, d - split)], dim=1).float()
            table_grad.index_add_(0, flat.long(), rows)
        return table_grad, None, None, None


def gather_split(
    table: Tensor, index: Tensor, split: int, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """(table[index][..., :split], table[index][..., split:]) as two contiguous tensors in `dtype`;
    gradients reach `table` in fp32. Two outputs, so the backward needs no zero-filled slice copies."""
    return _GatherRows.apply(table, index, dtype or table.dtype, split)


def gather_rows(table: Tensor, index: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """table[index] cast to `dtype` (default the table's); the gradient reaches `table` in fp32."""
    return gather_split(table, index, table.shape[1], dtype)[0]


# ------------------------------------------------------------------------------ full-ranking scorer
@dataclass(frozen=True)
class ScoreConfig:
    """Launch shape of `mlp_scores`' kernel: a program is `block_items` items x `users_per_program`
    users, one user (a (block_items, width) tile through every layer) at a time."""

    block_items: int = 64  # the M of each tl.dot: one Hopper warpgroup MMA is 64 rows
    users_per_program: int = 64  # the weights' shared-memory copy is reused for 64 x 64 pairs
    num_warps: int = 4  # one warpgroup; 8 wants block_items 128 (chained dots split M across warps)
    num_stages: int = 1  # nothing to pipeline but the L1-resident item tile: keeps loads off cp.async
    hold_items: bool = False  # keep the item tile in registers across users instead of re-reading L1


SCORE_CONFIG = ScoreConfig()
# fp32 tl.dot is TF32 or, exactly, CUDA-core FMAs over register-held operands: there the GEMM path
# (cuBLAS, honouring the run's TF32 setting) serves fp32; the interpreter runs fp32 too (tests).
SCORE_DTYPES_CUDA = (torch.bfloat16, torch.float16)
MAX_FIRST_WIDTH, MAX_HIDDEN_WIDTH = 256, 128


def mlp_scores_supported(mlp_layers: tuple[int, ...]) -> bool:
    """The MLP shapes the fused scorer takes: mlp_layers of 2 to 4 sizes (the first layer, computed as
    its user and item halves outside, then 0 to 2 layers in the kernel), the sizes after the first
    powers of two >= 16 (tl.dot's least), the first layer's output at most 256 wide and the rest 128
    (the registers of a (64, 256) tile in, a (64, 128) fp32 accumulator out)."""
    widths = mlp_layers[1:]
    return (
        1 <= len(widths) <= 3
        and all(w >= 16 and w & (w - 1) == 0 for w in widths)
        and widths[0] <= MAX_FIRST_WIDTH
        and max(widths[1:], default=0) <= MAX_HIDDEN_WIDTH
    )


def mlp_scores_twin(
    out: Tensor, hi: Tensor, hu: Tensor, hidden: list[tuple[Tensor, Tensor]], w_out: Tensor
) -> Tensor:
    """The kernel's arithmetic in torch: out (U, I) fp32 += the MLP logit of every (user, item) pair.

    hi (I, h1) the item half of the first layer, in the compute dtype; hu (U, h1) fp32, the user half
    with the bias; hidden: (W^T (K, N) in the compute dtype, bias (N,) fp32) per later layer; w_out
    (last width,) fp32. Each layer's input is rounded to the compute dtype, products summed in fp32.
    Users go in blocks of about 2^24 first-layer values.
    """
    n_items, width = hi.shape
    step = max(1, (1 << 24) // max(1, n_items * width))
    items = hi.float()
    for lo in range(0, len(hu), step):
        h = torch.relu(items[None] + hu[lo : lo + step, None, :])  # (u, I, h1) fp32
        for weight, bias in hidden:
            h = torch.relu(h.to(weight.dtype).float() @ weight.float() + bias)
        out[lo : lo + step] += h @ w_out
    return out


def _launch_mlp_scores(
    out: Tensor, hi: Tensor, hu: Tensor, hidden: list[tuple[Tensor, Tensor]], w_out: Tensor, cfg: ScoreConfig
) -> Tensor:
    n_users, n_items = out.shape
    widths = [hi.shape[1]] + [w.shape[1] for w, _ in hidden]
    if out.dtype != torch.float32 or not out.is_contiguous() or any(w.dtype != hi.dtype for w, _ in hidden):
        raise ValueError("mlp_scores wants a contiguous fp32 out and weights in the item tile's dtype")
    if out.is_cuda and hi.dtype not in SCORE_DTYPES_CUDA:
        raise ValueError(f"mlp_scores runs bf16 or fp16 on GPUs (fp32: score_items' GEMMs), not {hi.dtype}")
    (w1, b1), (w2, b2) = (hidden + [(w_out, w_out)] * 2)[:2]  # absent layers: any pointer, never read
    grid = (triton.cdiv(n_items, cfg.block_items), triton.cdiv(n_users, cfg.users_per_program))
    _mlp_scores_kernel[grid](
        hi, hu, w1, b1, w2, b2, w_out, out, n_users, n_items, cfg.users_per_program,
        H1=widths[0], H2=widths[min(1, len(hidden))], H3=widths[len(hidden)], DEPTH=len(hidden),
        HL=widths[-1], BLOCK_I=cfg.block_items, HOLD=cfg.hold_items,
        UPCAST=not out.is_cuda and hi.dtype == torch.bfloat16, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )  # fmt: skip
    return out


def mlp_scores(
    out: Tensor,
    hi: Tensor,
    hu: Tensor,
    hidden: list[tuple[Tensor, Tensor]],
    w_out: Tensor,
    cfg: ScoreConfig | None = None,
) -> Tensor:
    """out (U, I) fp32 += the MLP branch's logit of every (user, item) pair (see mlp_scores_twin for
    the arguments), in place; the Triton kernel where use_triton(out) (on CUDA: bf16 or fp16), else
    its twin. No autograd.

    What stays on chip: the kernel never writes an activation, only `out`; per pair it reads nothing
    but (from L1/L2) its item's first-layer half, which the caller computed once per item. Shapes are
    those of mlp_scores_supported.
    """
    if not use_triton(out) or (out.is_cuda and hi.dtype not in SCORE_DTYPES_CUDA):
        return mlp_scores_twin(out, hi, hu, hidden, w_out)
    if out.numel() == 0:
        return out
    hidden = [(w.contiguous(), b.float().contiguous()) for w, b in hidden]
    return _launch_mlp_scores(
        out, hi.contiguous(), hu.float().contiguous(), hidden, w_out.float().contiguous(), cfg or SCORE_CONFIG
    )
