"""Row gather whose backward is a sorted segment sum instead of atomic adds.

torch.compile lowers an embedding's backward to atomic scatter-adds, which serialise on popular rows
(a Zipf-distributed item table has many). Wrapping the gather as a custom op keeps the compiler out:
the backward runs ATen's CUDA embedding backward, which sorts the indices and sums each run once.
Measured on the H200 before adopting it (bench/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("ncflow::gather_rows", mutates_args=())
def gather_rows(weight: Tensor, index: Tensor) -> Tensor:
    """weight (N, D), index (...) -> (..., D)."""
    return torch.embedding(weight, index)


@gather_rows.register_fake
def _(weight: Tensor, index: Tensor) -> Tensor:
    return weight.new_empty((*index.shape, weight.shape[1]))


@torch.library.custom_op("ncflow::gather_rows_backward", mutates_args=())
def gather_rows_backward(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    return torch.ops.aten.embedding_dense_backward(grad, index, num_rows, -1, False)


@gather_rows_backward.register_fake
def _(grad: Tensor, index: Tensor, num_rows: int) -> Tensor:
    return grad.new_empty((num_rows, grad.shape[-1]))


def _setup_context(ctx, inputs, output) -> None:
    weight, index = inputs
    ctx.save_for_backward(index)
    ctx.num_rows = weight.shape[0]


def _backward(ctx, grad: Tensor):
    (index,) = ctx.saved_tensors
    return gather_rows_backward(grad.contiguous(), index, ctx.num_rows), None


gather_rows.register_autograd(_backward, setup_context=_setup_context)
