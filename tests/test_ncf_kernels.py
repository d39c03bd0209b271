"""NeuMF's fused ops: the torch twins against plain PyTorch, and the Triton kernels against the twins.

The kernels run here under Triton's interpreter (TRITON_INTERPRET=1, CPU tensors) in a subprocess,
since the interpreter is chosen when Triton is imported; on the GPU they are checked by
bench/ncf_kernel_check.py. Masks compare exactly (the same hash); values exactly where the arithmetic
is the same, else within fp32 summation order and bf16 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from triton_interpreter import run_interpreted

from models.ncf.gather_kernels import gather_add_relu_dropout, gather_rows, gather_split
from models.ncf.gmf_kernel import gmf_logit
from models.ncf.kernels import (
    dropout_threshold,
    keep_mask,
    linear_relu_dropout,
    relu_dropout_twin,
)


def identity_layer(width: int) -> torch.nn.Linear:
    """x @ I + 0 is x exactly: linear_relu_dropout through it is ReLU and dropout alone."""
    layer = torch.nn.Linear(width, width)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width))
        layer.bias.zero_()
    return layer


def relu_dropout(x: torch.Tensor, key: torch.Tensor, layer: int, p: float, training: bool) -> torch.Tensor:
    return linear_relu_dropout(x, identity_layer(x.shape[-1]), key, layer, p, training)


def test_relu_without_dropout_is_relu_with_relu_gradient() -> None:
    x = torch.randn(7, 5, 12, requires_grad=True)
    y = relu_dropout(x, torch.tensor(3), 0, 0.5, training=False)
    assert torch.equal(y, F.relu(x))
    y.sum().backward()
    assert torch.equal(x.grad, (x > 0).float())


def test_dropout_drops_about_p_scales_the_rest_and_backward_follows_the_mask() -> None:
    x = torch.rand(256, 512) + 0.1  # all positive: only dropout zeroes
    key = torch.tensor(12345)
    x.requires_grad_(True)
    y = relu_dropout(x, key, 1, 0.5, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.allclose(y[kept], x[kept] * 2.0)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.float() * 2.0)
    # The mask is a pure function of (key, layer): the same again, another for another key or layer.
    assert torch.equal(relu_dropout(x, key, 1, 0.5, True) != 0, kept)
    assert not torch.equal(relu_dropout(x, torch.tensor(12346), 1, 0.5, True) != 0, kept)
    assert not torch.equal(relu_dropout(x, key, 2, 0.5, True) != 0, kept)


def test_gmf_logit_equals_autograd_through_the_gmf_product_and_final_layer() -> None:
    u = torch.randn(6, 8, requires_grad=True)
    i = torch.randn(6, 5, 8, requires_grad=True)
    w = torch.randn(8, requires_grad=True)
    out = gmf_logit(u, i, w)
    plain = F.linear(u[:, None, :] * i, w[None, :]).squeeze(-1)  # the model's former GMF path
    assert out.shape == (6, 5)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(6, 5)
    mine = torch.autograd.grad(out, [u, i, w], upstream)
    want = torch.autograd.grad(plain, [u, i, w], upstream)
    for a, b in zip(mine, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # bf16 rows (as under autocast), fp32 weights: the result in the rows' dtype, each gradient in its
    # input's, all within one bf16 rounding of fp32 arithmetic on the same values
    ub, ib = (t.detach().bfloat16().requires_grad_(True) for t in (u, i))
    out = gmf_logit(ub, ib, w)
    g = upstream.bfloat16()
    mine = (out, *torch.autograd.grad(out, [ub, ib, w], g))
    assert [t.dtype for t in mine] == [torch.bfloat16] * 3 + [torch.float32]
    uf, i_f = (t.detach().float().requires_grad_(True) for t in (ub, ib))
    plain = F.linear(uf[:, None, :] * i_f, w[None, :]).squeeze(-1)
    want = (plain, *torch.autograd.grad(plain, [uf, i_f, w], g.float()))
    for a, b in zip(mine, want):
        torch.testing.assert_close(a.float(), b, rtol=2**-7, atol=1e-5)


def test_gather_add_relu_dropout_reads_items_per_item_rows_and_scatters_their_gradient() -> None:
    p = torch.randn(9, 8, requires_grad=True)  # one row per item: layer 0's item half, per item
    items = torch.tensor([[0, 8, 8, 3, 1], [3, 3, 2, 7, 0], [5, 6, 8, 1, 1]], dtype=torch.int32)
    hu = torch.randn(3, 8, requires_grad=True)
    key = torch.tensor(7)
    y = gather_add_relu_dropout(p, items, hu, key, 0, 0.25, training=True)
    x = p.detach()[items.long()] + hu.detach()[:, None]
    threshold, scale = dropout_threshold(0.25)
    keep = keep_mask(x.shape, key, 0, threshold, "cpu") & (x > 0)
    assert torch.allclose(y, torch.where(keep, x * scale, torch.zeros(())))
    upstream = torch.randn_like(y)
    y.backward(upstream)
    dx = upstream * keep * scale
    assert torch.allclose(hu.grad, dx.sum(1))
    assert torch.allclose(
        p.grad, torch.zeros(9, 8).index_add_(0, items.reshape(-1).long(), dx.reshape(-1, 8))
    )
    # The same function as layer 0 on per-candidate rows (the mask included): only where p is computed moved.
    assert torch.equal(y, relu_dropout_twin(p.detach()[items.long()], key, 0, 0.25, hu.detach()))


def test_gather_rows_matches_embedding_forward_and_backward() -> None:
    table = torch.randn(10, 6, requires_grad=True)
    index = torch.tensor([[1, 3, 3], [9, 0, 1]])
    out = gather_rows(table, index)
    assert torch.equal(out, F.embedding(index, table))
    upstream = torch.randn(2, 3, 6)
    out.backward(upstream)
    reference = torch.zeros(10, 6).index_add_(0, index.reshape(-1), upstream.reshape(-1, 6))
    assert torch.allclose(table.grad, reference)
    assert gather_rows(table, index, torch.bfloat16).dtype == torch.bfloat16


def test_linear_relu_dropout_equals_autograd_through_plain_ops() -> None:
    layer = torch.nn.Linear(12, 8)
    x = torch.randn(4, 5, 12, requires_grad=True)
    key = torch.tensor(99)
    y = linear_relu_dropout(x, layer, key, 2, 0.5, training=True)
    threshold, scale = dropout_threshold(0.5)
    pre = layer(x.detach().clone().requires_grad_(True))
    keep = keep_mask(pre.reshape(-1, 8).shape, key, 2, threshold, "cpu").view(pre.shape) & (pre > 0)
    plain = torch.where(keep, pre * scale, torch.zeros(()))
    assert torch.allclose(y, plain, atol=1e-6)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    grads = torch.autograd.grad(plain, [layer.weight, layer.bias], upstream)
    mine = torch.autograd.grad(
        linear_relu_dropout(x, layer, key, 2, 0.5, True), [layer.weight, layer.bias], upstream
    )
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(mine, grads))
    assert torch.allclose(
        x.grad, (upstream * keep * scale).reshape(-1, 8).mm(layer.weight).view(4, 5, 12), atol=1e-5
    )


def test_gather_split_returns_both_halves_and_one_table_gradient() -> None:
    table = torch.randn(9, 7, requires_grad=True)
    index = torch.tensor([[0, 8, 8], [3, 3, 1]])
    a, b = gather_split(table, index, 3)
    assert torch.equal(torch.cat([a, b], -1), F.embedding(index, table))
    (a.sum() * 2 + b.sum() * 3).backward()
    counts = torch.bincount(index.reshape(-1), minlength=9).float()[:, None]
    assert torch.equal(table.grad, torch.cat([counts.expand(9, 3) * 2, counts.expand(9, 4) * 3], 1))


INTERPRETED = r"""
import torch
from models.ncf import gather_kernels, gmf_kernel, kernels
from models.ncf.gather_kernels import _GatherRows
from models.ncf.kernels import relu_dropout_twin, _launch_relu_dropout, _launch_masked_grad_colsum
assert kernels.use_triton(torch.zeros(1))
g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.bfloat16):
    x = torch.randn(3, 5, 40, generator=g).to(dtype)
    key = torch.tensor(987654321)
    for layer, p in ((0, 0.5), (2, 0.5), (1, 0.0), (3, 0.1)):
        y = _launch_relu_dropout(x, key, layer, p)
        twin = relu_dropout_twin(x, key, layer, p)
        # The same mask always; values exact in fp32. The interpreter rounds fp32 -> bf16 its own way
        # (the GPU rounds to nearest even, as torch does: exact there, see bench/ncf_kernel_check.py).
        assert torch.equal(y != 0, twin != 0), (dtype, layer, p)
        exact = dtype == torch.float32
        assert torch.allclose(y.float(), twin.float(), rtol=0 if exact else 2**-7, atol=0), (dtype, layer, p)
        dy = torch.randn(x.shape, generator=g).to(dtype)
        scale = kernels.dropout_threshold(p)[1]
        dx = _launch_masked_grad_colsum(dy.reshape(-1, 40), y.reshape(-1, 40), scale)[0].view(x.shape)
        want = torch.where(y != 0, dy.float() * scale, torch.zeros(())).to(dtype)
        assert torch.allclose(dx.float(), want.float(), rtol=0 if exact else 2**-7, atol=0)
table = torch.randn(50, 24, generator=g, requires_grad=True)
index = torch.randint(0, 50, (7, 5), generator=g, dtype=torch.int32)
assert torch.equal(_GatherRows.apply(table, index, torch.float32, 24, 24)[0], table.detach()[index.long()])
out = _GatherRows.apply(table, index, torch.bfloat16, 24, 24)[0]
assert torch.allclose(out.float(), table.detach()[index.long()], rtol=2**-7, atol=0)
upstream = torch.randn(7, 5, 24, generator=g).to(torch.bfloat16)
out.backward(upstream)
ref = torch.zeros(50, 24).index_add_(0, index.reshape(-1).long(), upstream.reshape(-1, 24).float())
assert torch.allclose(table.grad, ref, atol=1e-6), (table.grad - ref).abs().max()
a, b = gather_kernels._GatherRows.apply(table.detach(), index, torch.float32, 10, 24)
assert torch.equal(torch.cat([a, b], -1), table.detach()[index.long()])
# The GMF columns alone (width < row length): only they are read, and only they get gradient.
table.grad = None
a, b = gather_kernels._GatherRows.apply(table, index, torch.float32, 10, 10)
assert b.shape[-1] == 0 and torch.equal(a, table.detach()[index.long()][..., :10])
a.backward(torch.ones_like(a))
counts = torch.bincount(index.reshape(-1).long(), minlength=50).float()[:, None]
assert torch.equal(table.grad, torch.cat([counts.expand(50, 10), torch.zeros(50, 14)], 1))
# Layer 0 from per-item rows: kernels against the twin path (the same function on CPU tensors).
for dtype in (torch.float32, torch.bfloat16):
    p = torch.randn(40, 96, generator=g).to(dtype)
    items = torch.randint(0, 40, (13, 5), generator=g, dtype=torch.int32)
    hu = torch.randn(13, 96, generator=g).to(dtype)
    key = torch.tensor(123456789)
    y = gather_kernels._GatherAddReluDropout.apply(p, items, hu, key, 0, 0.5)
    twin = relu_dropout_twin(p[items.long()], key, 0, 0.5, hu)
    exact = dtype == torch.float32
    assert torch.equal(y != 0, twin != 0), dtype
    assert torch.allclose(y.float(), twin.float(), rtol=0 if exact else 2**-7, atol=0), dtype
    pg, hg = p.clone().requires_grad_(), hu.clone().requires_grad_()
    dy = torch.randn(y.shape, generator=g).to(dtype)
    gather_kernels._GatherAddReluDropout.apply(pg, items, hg, key, 0, 0.5).backward(dy)
    dx = torch.where(y != 0, dy.float() * 2.0, torch.zeros(()))
    want_p = torch.zeros(40, 96).index_add_(0, items.reshape(-1).long(), dx.reshape(-1, 96))
    tol = 1e-5 if exact else 2**-6
    assert torch.allclose(pg.grad.float(), want_p, rtol=tol, atol=tol), (dtype, (pg.grad.float() - want_p).abs().max())
    assert torch.allclose(hg.grad.float(), dx.sum(1), rtol=tol, atol=tol), dtype
y = torch.randn(70, 33, generator=g) * (torch.rand(70, 33, generator=g) > 0.5)
dy = torch.randn(70, 33, generator=g)
dx, bias_grad = kernels._launch_masked_grad_colsum(dy, y, 2.0)
assert torch.equal(dx, torch.where(y != 0, dy * 2.0, torch.zeros(())))
assert torch.allclose(bias_grad, dx.sum(0), atol=1e-5)
bf16, fp32 = torch.bfloat16, torch.float32
for dtype in (fp32, bf16):  # K = 24 and 37 rows: both blocks part-filled
    u, i = torch.randn(37, 24, generator=g).to(dtype), torch.randn(37, 5, 24, generator=g).to(dtype)
    w = torch.randn(24, generator=g)
    tol = dict(rtol=1e-5 if dtype == fp32 else 2**-7, atol=1e-5)
    out = gmf_kernel._launch_gmf_logit(u, i, w)
    assert out.dtype == dtype
    assert torch.allclose(out.float(), gmf_kernel.gmf_logit_twin(u, i, w).float(), **tol)
    up = torch.randn(37, 5, generator=g).to(dtype)
    mine, want = gmf_kernel._launch_gmf_logit_grad(up, u, i, w), gmf_kernel.gmf_logit_grad_twin(up, u, i, w)
    for a, b in zip(mine, want):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), **tol), (dtype, a.shape)
import os
from models.ncf.model import NeuMF, NeuMFConfig
model = NeuMF(NeuMFConfig(40, 60, mf_dim=24, mlp_layers=(32, 200, 8), dropout=0.5)).train()
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0.0, 0.3, generator=g)
model.noise.fill_(12345)
users, items = torch.randint(0, 40, (37,), generator=g), torch.randint(0, 60, (37, 5), generator=g)
up = torch.randn(37, 5, generator=g)
runs = []
for interpret in ("1", "0"):  # a training step's forward and backward through the kernels, then the twins
    os.environ["TRITON_INTERPRET"] = interpret
    logits = model(users, items)
    runs.append((logits, *torch.autograd.grad(logits, list(model.parameters()), up)))
for name, a, b in zip(["logits"] + [n for n, _ in model.named_parameters()], *runs):
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), name
print("kernels match their twins")
"""


def test_triton_kernels_equal_their_twins_under_the_interpreter() -> None:
    run_interpreted(INTERPRETED, "kernels match their twins")
