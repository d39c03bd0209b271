"""NeuMF's fused full-ranking scorer: the MLP branch for every (user, item) pair of a chunk, all of its
layers kept on chip (a Triton kernel on GPUs; its torch twin elsewhere).

Full ranking scores 138,493 x 26,744 pairs on ml-20m. As GEMMs (NeuMF.score_items' CPU path), each
layer's activations go through HBM: about 1.5 KB of traffic per pair, 5.8 s on an H200. Here a program
holds a tile of items and runs one user at a time through every layer with tl.dot, reading only its
item's first-layer half (computed once per item by the caller) and writing only the logit: 0.78 s.
Checked against the twin and the GEMMs under the interpreter (tests/test_ncf_score_kernel.py) and on
the GPU (bench/fused_score_check.py): within rounding, not bit for bit (tensor cores sum in their own
order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.ncf.kernels import triton, use_triton

if triton is not None:
    import triton.language as tl

if triton is not None:

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
