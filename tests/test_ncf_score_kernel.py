"""NeuMF's fused full-ranking scorer (models/ncf/score_kernel.py: mlp_scores) against score_items' GEMM path.

On the CPU the fused formulation runs as its torch twin; the Triton kernel runs under Triton's
interpreter (TRITON_INTERPRET=1) in a subprocess, as in tests/test_ncf_kernels.py. On the GPU,
bench/fused_score_check.py compares the kernel with the GEMM path at ml-20m's shapes.
"""

from __future__ import annotations

import pytest
import torch
from triton_interpreter import run_interpreted

from models.ncf.model import NeuMF, NeuMFConfig
from models.ncf.score_kernel import mlp_scores_supported


def spread_model(layers: tuple[int, ...], users: int = 20, items: int = 50, mf: int = 16) -> NeuMF:
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(users, items, mf, layers, 0.5)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.3)  # far from the small init: every term matters
    return model


def test_supported_shapes() -> None:
    assert mlp_scores_supported((256, 256, 128, 64))  # ml-20m
    assert mlp_scores_supported((256, 128, 64)) and mlp_scores_supported((64, 32, 16))  # ml-1m, tiny
    assert mlp_scores_supported((8, 16))  # the first layer alone; its input width is free
    assert not mlp_scores_supported((16, 8))  # below tl.dot's 16
    assert not mlp_scores_supported((256, 192, 64))  # not a power of two
    assert not mlp_scores_supported((512, 512, 128))  # first activation above 256
    assert not mlp_scores_supported((256, 256, 256, 64))  # a later layer above 128
    assert not mlp_scores_supported((64, 64, 32, 32, 16))  # four layers
    assert not mlp_scores_supported(())


@pytest.mark.parametrize("layers", [(256, 256, 128, 64), (64, 32, 16), (32, 16)])
def test_fused_twin_scores_as_the_gemm_path(layers: tuple[int, ...]) -> None:
    model = spread_model(layers)
    users = torch.tensor([3, 7, 0, 19, 5, 1, 2])
    with torch.no_grad():
        gemm = model.score_items(users, fused=False)
        fused = model.score_items(users, fused=True)  # the kernel's torch twin on the CPU
        torch.testing.assert_close(fused, gemm, rtol=1e-5, atol=1e-5 * gemm.abs().max().item())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gemm16 = model.score_items(users, fused=False)
            fused16 = model.score_items(users, fused=True)
        some = torch.tensor([49, 0, 7, 7, 31])  # a subset of the items, in any order
        subset = model.score_items(users, some, fused=True)
        torch.testing.assert_close(subset, gemm[:, some], rtol=1e-5, atol=1e-5 * gemm.abs().max().item())
    scale = gemm.abs().max().item()
    assert fused16.dtype == torch.float32
    assert (fused16 - gemm16).abs().max().item() < scale / 64  # both bf16: a few roundings of 2^-8
    assert (fused16 - gemm).abs().max().item() < scale / 64


def test_fused_scoring_is_refused_for_shapes_it_does_not_take_and_skipped_without_an_mlp() -> None:
    with torch.no_grad():
        with pytest.raises(ValueError, match="does not take mlp_layers"):
            spread_model((16, 8)).score_items(torch.tensor([0, 1]), fused=True)
        gmf = spread_model(())  # GMF alone: one GEMM either way
        torch.testing.assert_close(
            gmf.score_items(torch.tensor([0, 1]), fused=True), gmf.score_items(torch.tensor([0, 1]))
        )
    assert not spread_model((16, 8)).fused_scoring("cpu") and not gmf.fused_scoring("cpu")


INTERPRETED = r"""
import torch
from models.ncf import kernels
from models.ncf.score_kernel import ScoreConfig, _launch_mlp_scores, mlp_scores_twin
from models.ncf.model import NeuMF, NeuMFConfig
assert kernels.use_triton(torch.zeros(1))
g = torch.Generator().manual_seed(0)
configs = (ScoreConfig(), ScoreConfig(block_items=16, users_per_program=3, hold_items=True))
# The kernel against its twin: items not a multiple of the block, users not of the program's run.
for dtype in (torch.float32, torch.bfloat16):
    for widths in ((256, 128, 64), (32, 16), (64,)):
        hi = torch.randn(50, widths[0], generator=g).to(dtype)
        hu = torch.randn(7, widths[0], generator=g)
        hidden = [((torch.randn(a, b, generator=g) / a**0.5).to(dtype), torch.randn(b, generator=g))
                  for a, b in zip(widths[:-1], widths[1:])]
        w_out = torch.randn(widths[-1], generator=g)
        start = torch.randn(7, 50, generator=g)
        want = mlp_scores_twin(start.clone(), hi, hu, hidden, w_out)
        for cfg in configs:
            got = _launch_mlp_scores(start.clone(), hi, hu, hidden, w_out, cfg)
            # fp32: the same sums in another order. bf16: the interpreter rounds fp32 -> bf16 its own way
            # (the GPU rounds to nearest even, as torch does), a few ulps of 2^-8 over the layers.
            tol = 1e-5 if dtype == torch.float32 else 2**-6
            err = (got - want).abs().max().item() / want.abs().max().item()
            assert err < tol, (dtype, widths, cfg, err)
# score_items picks the kernel here (CPU tensors, interpreter, no gradients) and agrees with its GEMMs.
for layers in ((256, 256, 128, 64), (64, 32, 16)):
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(20, 50, 16, layers, 0.5)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    assert model.fused_scoring("cpu")
    users = torch.tensor([3, 7, 0, 19, 5, 1, 2])
    with torch.no_grad():
        gemm = model.score_items(users, fused=False)
        fused = model.score_items(users)
        scale = gemm.abs().max().item()
        assert (fused - gemm).abs().max().item() < 1e-5 * scale, layers
        some = torch.tensor([49, 0, 7, 7, 31])  # a subset of the items, in any order
        assert (model.score_items(users, some) - gemm[:, some]).abs().max().item() < 1e-5 * scale, layers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gemm16 = model.score_items(users, fused=False)
            fused16 = model.score_items(users)
        assert (fused16 - gemm16).abs().max().item() < scale / 64, layers
        assert (fused16 - gemm).abs().max().item() < scale / 64, layers
print("fused scorer matches")
"""


def test_fused_score_kernel_matches_its_twin_and_the_gemm_path_under_the_interpreter() -> None:
    run_interpreted(INTERPRETED, "fused scorer matches")


def test_full_rank_chunk_sizes_by_what_the_scorer_holds() -> None:
    from models.ncf.evaluate import FUSED_BYTES_PER_PAIR, full_rank_chunk

    model = NeuMF(NeuMFConfig(10, 26744))  # ml-20m's NeuMF
    if model.fused_scoring("cpu"):  # under TRITON_INTERPRET=1: the fused scorer's fp32 scores
        assert full_rank_chunk(model, 26744, "cpu") == 2**31 // (FUSED_BYTES_PER_PAIR * 26744) == 10037
    else:  # the GEMM path: layer 1's (users x items x 256) bf16 output
        assert full_rank_chunk(model, 26744, "cpu") == 2**31 // (2 * 256 * 26744) == 156
        assert full_rank_chunk(model, 26744, "cpu", budget_bytes=2**33) == 627
