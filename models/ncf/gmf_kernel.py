"""The GMF branch of NeuMF and its half of the final layer as one op: a Triton kernel each way on GPUs,
a torch twin on CPUs (models/ncf/kernels.py says why hand-written).

`gmf_logit(u, i, w)` = sum_k u[b, k] i[b, c, k] w[k]: the (B, C, mf) product is never written, and the
backward's three gradients come from one read of the item rows (eager torch: a product, a GEMV, then an
outer product, a product, a reduction and a GEMV in the backward, each a full pass over (B, C, mf)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.ncf.kernels import triton, use_triton

if triton is not None:
    import triton.language as tl


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


if triton is not None:

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
