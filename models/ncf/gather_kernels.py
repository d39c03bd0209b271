"""Embedding gathers of NeuMF's training step: Triton kernels on GPUs, torch twins on CPUs
(models/ncf/kernels.py says why hand-written).

- `gather_split` / `gather_rows`: an embedding lookup that writes the compute dtype (bf16) directly,
  optionally only the first columns of each row, and whose backward is one pass of fp32 atomic adds
  into the dense table gradient (no sort, no fp32 copy of the rows).
- `gather_add_relu_dropout`: layer 0, whose item half W_i @ e_item is computed once per item of the
  catalogue (27k on ml-20m) instead of once per candidate (1M a step) and gathered, fused with the user
  half's add, ReLU and dropout (the mask of models/ncf/kernels.py); its backward sums the user half's
  gradient and scatters the item half's per item in one pass, without writing dx.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.ncf.kernels import (
    ELEMENTWISE_BLOCK,
    dropout_threshold,
    layer_salt,
    relu_dropout_twin,
    triton,
    use_triton,
)

if triton is not None:
    import triton.language as tl

    from models.ncf.kernels import _relu_dropout

GATHER_ROWS = 32
GRAD_ROWS, GRAD_COLS = 32, 128  # _gather_add_grad_kernel's tile: (users, columns)

if triton is not None:

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
        y = _relu_dropout(v, offs, key_ptr, salt, threshold, scale)
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
