"""The Triton kernels of NeuMF's training step against their torch twins, on the GPU (CI runs the twins):
models/ncf/kernels.py, gather_kernels.py and gmf_kernel.py.

    python bench/ncf_kernel_check.py        # one line per check, then timings; exits 1 on any mismatch

Every check draws fresh random inputs and poisons the outputs first (torch.empty_like is not zeroed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.ncf import gather_kernels, gmf_kernel, kernels  # noqa: E402


def rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference, relative to the largest value of b: one bf16 rounding is <= 2^-8."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def gpu_ms(fn, reps: int = 20) -> float:
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def timings(g: torch.Generator) -> None:
    """The fused ops against the eager ops they replace, at one H200 step's shapes (209066 x 5, bf16)."""
    bf16 = torch.bfloat16
    u = torch.randn(209066, 64, device="cuda", generator=g).to(bf16).requires_grad_(True)
    i = torch.randn(209066, 5, 64, device="cuda", generator=g).to(bf16).requires_grad_(True)
    w = torch.randn(64, device="cuda", generator=g, requires_grad=True)
    up = torch.randn(209066, 5, device="cuda", generator=g).to(bf16)

    def eager() -> None:  # the former path: product, GEMV, and their backward (as under autocast)
        torch.autograd.grad(F.linear(u[:, None, :] * i, w.to(bf16)[None]).squeeze(-1), (u, i, w), up)

    old = gpu_ms(eager)
    new = gpu_ms(lambda: torch.autograd.grad(gmf_kernel.gmf_logit(u, i, w), (u, i, w), up))
    print(f"time: GMF logit forward + backward, eager {old:.3f} ms; two kernels {new:.3f} ms")
    p = torch.randn(26744, 256, device="cuda", generator=g).to(bf16).requires_grad_(True)
    items = torch.randint(0, 26744, (209066, 5), device="cuda", generator=g, dtype=torch.int32)
    hu = torch.randn(209066, 256, device="cuda", generator=g).to(bf16).requires_grad_(True)
    key, dy = torch.tensor(5, device="cuda"), torch.randn(209066, 5, 256, device="cuda", generator=g).to(bf16)
    fwd = gpu_ms(lambda: gather_kernels.gather_add_relu_dropout(p, items, hu, key, 0, 0.5, True))
    both = gpu_ms(
        lambda: torch.autograd.grad(
            gather_kernels.gather_add_relu_dropout(p, items, hu, key, 0, 0.5, True), (p, hu), dy
        )
    )
    print(f"time: layer 0 from per-item rows, forward {fwd:.3f} ms, forward + backward {both:.3f} ms")


def main() -> int:
    assert torch.cuda.is_available() and kernels.use_triton(torch.zeros(1, device="cuda"))
    g = torch.Generator(device="cuda").manual_seed(1)
    bad = 0
    for dtype in (torch.bfloat16, torch.float32):
        for shape, layer, p in (((4099, 5, 256), 0, 0.5), ((4099, 5, 128), 1, 0.5), ((333, 101, 256), 0, 0.0),
                                ((1000, 64), 3, 0.1)):  # fmt: skip
            x = torch.randn(shape, device="cuda", generator=g).to(dtype)
            key = torch.tensor(int(torch.randint(0, 2**32, (1,), generator=g, device="cuda")), device="cuda")
            y = kernels._launch_relu_dropout(x, key, layer, p)
            twin = kernels.relu_dropout_twin(x, key, layer, p)
            dy = torch.randn(shape, device="cuda", generator=g).to(dtype)
            scale = kernels.dropout_threshold(p)[1]
            rows = (-1, shape[-1])
            dx = kernels._launch_masked_grad_colsum(dy.reshape(rows), y.reshape(rows), scale)[0].view(shape)
            want = torch.where(y != 0, dy.float() * scale, torch.zeros((), device="cuda")).to(dtype)
            ok = torch.equal(y, twin) and torch.equal(dx, want)
            kept = (y != 0).float().mean().item()
            print(f"relu_dropout {str(dtype):15} {shape} p={p}: exact={ok}, nonzero share {kept:.3f}")
            bad += not ok
    table = torch.randn(26744, 192, device="cuda", generator=g, requires_grad=True)
    index = torch.randint(0, 26744, (20000, 5), device="cuda", generator=g, dtype=torch.int32)
    out = gather_kernels.gather_rows(table, index, torch.bfloat16)
    ok_fwd = torch.equal(out, table.detach()[index.long()].to(torch.bfloat16))
    upstream = torch.randn(20000, 5, 192, device="cuda", generator=g).to(torch.bfloat16)
    out.backward(upstream)
    ref = torch.zeros_like(table).index_add_(0, index.reshape(-1).long(), upstream.reshape(-1, 192).float())
    err = ((table.grad - ref).norm() / ref.norm()).item()  # atomics add in another order: rounding only
    print(f"gather_rows bf16: forward exact={ok_fwd}; backward relative error {err:.2e} (fp32 atomics)")
    bad += (not ok_fwd) + (err > 1e-6)
    y = torch.randn(300001, 128, device="cuda", generator=g).to(torch.bfloat16).relu()
    dy = torch.randn(300001, 128, device="cuda", generator=g).to(torch.bfloat16)
    dx, bias_grad = kernels._launch_masked_grad_colsum(dy, y, 2.0)
    want = torch.where(y != 0, dy.float() * 2.0, torch.zeros((), device="cuda"))
    ok = torch.equal(dx, want.to(torch.bfloat16))
    err = ((bias_grad - want.sum(0)).norm() / want.sum(0).norm()).item()
    print(f"masked grad + bias column sums: exact={ok}; bias relative error {err:.2e}")
    bad += (not ok) + (err > 1e-5)
    for dtype in (torch.bfloat16, torch.float32):  # the GMF branch through its half of the final layer
        tol = 2**-7 if dtype == torch.bfloat16 else 1e-5
        for shape in ((4099, 5, 64), (333, 101, 64), (1000, 1, 48), (209066, 5, 64)):
            u = torch.randn(shape[0], shape[2], device="cuda", generator=g).to(dtype)
            i = torch.randn(shape, device="cuda", generator=g).to(dtype)
            w = torch.randn(shape[2], device="cuda", generator=g)
            up = torch.randn(shape[:2], device="cuda", generator=g).to(dtype)
            out = gmf_kernel._launch_gmf_logit(u, i, w)
            du, di, dw = gmf_kernel._launch_gmf_logit_grad(up, u, i, w)
            want_du, want_di, want_dw = gmf_kernel.gmf_logit_grad_twin(up, u, i, w)
            errs = [
                rel_max(out, gmf_kernel.gmf_logit_twin(u, i, w)),
                rel_max(du, want_du),
                rel_max(dw, want_dw),
            ]
            # grad i: the same two products, exact; grad w: fp32 sums of ~10^6 terms in another order
            ok = torch.equal(di, want_di) and max(errs[:2]) <= tol and errs[2] <= 1e-4
            print(f"gmf_logit {str(dtype):15} {shape}: grad i exact={torch.equal(di, want_di)}; max error "
                  f"logits {errs[0]:.1e}, grad u {errs[1]:.1e} (<= {tol:.0e}), grad w {errs[2]:.1e} (<= 1e-4): "
                  f"ok={ok}")  # fmt: skip
            bad += not ok
    timings(g)
    # Layer 0 from per-item rows (the training step's path): forward exact against the twin (the same
    # mask, the same bf16 rounding); backward = the twin's up to fp32 atomics' summation order.
    p = torch.randn(26744, 256, device="cuda", generator=g).to(torch.bfloat16).requires_grad_()
    items = torch.randint(0, 26744, (20011, 5), device="cuda", generator=g, dtype=torch.int32)
    hu = torch.randn(20011, 256, device="cuda", generator=g).to(torch.bfloat16).requires_grad_()
    key = torch.tensor(987654321, device="cuda")
    y = gather_kernels.gather_add_relu_dropout(p, items, hu, key, 0, 0.5, training=True)
    twin = kernels.relu_dropout_twin(p.detach()[items.long()], key, 0, 0.5, hu.detach())
    dy = torch.randn(y.shape, device="cuda", generator=g).to(torch.bfloat16)
    y.backward(dy)
    dx = torch.where(twin != 0, dy.float() * 2.0, torch.zeros((), device="cuda"))
    want_p = torch.zeros(26744, 256, device="cuda").index_add_(
        0, items.reshape(-1).long(), dx.reshape(-1, 256)
    )
    err_p = ((p.grad.float() - want_p).norm() / want_p.norm()).item()  # p.grad is bf16: rounding ~2^-9
    err_hu = ((hu.grad.float() - dx.sum(1)).norm() / dx.sum(1).norm()).item()
    ok = torch.equal(y, twin)
    print(
        f"gather+add+relu+dropout bf16: forward exact={ok}; grad relative error p {err_p:.2e}, hu {err_hu:.2e}"
    )
    bad += (not ok) + (err_p > 5e-3) + (err_hu > 5e-3)
    gmf = gather_kernels.gather_split(table.detach(), index, 64, torch.bfloat16, 64)[
        0
    ]  # the GMF columns alone
    ok = torch.equal(gmf, table.detach()[index.long()][..., :64].to(torch.bfloat16))
    print(f"gather of the first 64 columns: exact={ok}")
    bad += not ok
    print("all kernel checks passed" if not bad else f"{bad} kernel checks FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
