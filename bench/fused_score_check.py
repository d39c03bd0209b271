"""NeuMF's fused full-ranking scorer (models/ncf/score_kernel.py: mlp_scores) against score_items' GEMMs, on a GPU.

    python bench/fused_score_check.py            # one line; exits 1 on a mismatch
    python bench/fused_score_check.py --sweep    # also times kernel launch shapes: JSON lines, then a summary
    TRITON_INTERPRET=1 python bench/fused_score_check.py --device cpu --users 7 --items 300   # a CPU smoke run

ml-20m's NeuMF (64 / 256-256-128-64, 138,493 users x 26,744 items) with spread random weights (a
range of scores like a trained model's, not the init's near-constant ones). In bf16, as full ranking
runs on GPUs, `--users` users (627: the GEMM path's best chunk) against every item, three ways:
- fused: score_items as full ranking calls it (the Triton kernel);
- gemm: score_items(fused=False), the GEMM formulation in bf16;
- fp32: the GEMM formulation in fp32 without TF32, the reference.
Mismatch (exit 1) when: the kernel differs from its torch twin on 64 of the users by more than 2^-7
of the score range (same roundings, other summation order); fused and gemm differ by more than 2^-5
of it; fused is more than twice as far from fp32 as gemm is (plus 2^-10 of the range); or fused's
top-10 items agree with fp32's less than gemm's do (minus 0.02), or under 0.8 on average.

--sweep then times score_items on one chunk of users (models.ncf.evaluate.full_rank_chunk's) for each
launch shape (score_kernel.ScoreConfig) after checking it against the default's output, and prints per
shape the seconds, the extrapolation to every ml-20m user and the tensor-core TFLOP/s it reaches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.ncf import kernels, score_kernel  # noqa: E402
from models.ncf.evaluate import full_rank_chunk  # noqa: E402
from models.ncf.model import NeuMF, NeuMFConfig  # noqa: E402

ML20M_USERS, ML20M_ITEMS = 138_493, 26_744
SWEEP = (  # block_items, users_per_program, num_warps, num_stages, hold_items
    score_kernel.ScoreConfig(),
    score_kernel.ScoreConfig(users_per_program=16),
    score_kernel.ScoreConfig(users_per_program=256),
    score_kernel.ScoreConfig(hold_items=True),
    score_kernel.ScoreConfig(num_stages=2),
    score_kernel.ScoreConfig(block_items=128, num_warps=8),
    score_kernel.ScoreConfig(block_items=128, num_warps=8, hold_items=True),
    score_kernel.ScoreConfig(block_items=128, num_warps=4),
)


def spread_model(users: int, items: int, device: torch.device) -> NeuMF:
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(users, items, dropout=0.0))
    with torch.no_grad():
        for table in (model.user_embed, model.item_embed):
            table.weight.normal_(0.0, 0.3)
        for layer in model.mlp:
            layer.bias.normal_(0.0, 0.1)
    return model.to(device).eval()


def top_overlap(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """Mean share of a row's top-k items (by a) that are also in its top-k by b."""
    ta, tb = a.topk(k, dim=1).indices, b.topk(k, dim=1).indices
    return (ta[:, :, None] == tb[:, None, :]).any(dim=2).float().mean().item()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def check(model: NeuMF, users: torch.Tensor, device: torch.device) -> tuple[bool, str]:
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference is fp32
    with bf16:
        assert model.fused_scoring(device, torch.bfloat16), "the fused scorer does not run here"
        fused = model.score_items(users)
        gemm = model.score_items(users, fused=False)
        out, hi, hu, hidden, w_out = model.fused_inputs(
            users[:64], torch.arange(model.config.n_items, device=device)
        )
    exact = model.score_items(users, fused=False)  # fp32 GEMMs
    kernel = score_kernel.mlp_scores(out.clone(), hi, hu, hidden, w_out)
    twin = score_kernel.mlp_scores_twin(out.clone(), hi, hu, hidden, w_out)
    span = (exact.max() - exact.min()).item()
    d_twin = (kernel - twin).abs().max().item()
    d_gemm = (fused - gemm).abs().max().item()
    e_fused, e_gemm = (fused - exact).abs().max().item(), (gemm - exact).abs().max().item()
    o_fused, o_gemm, o_both = top_overlap(fused, exact), top_overlap(gemm, exact), top_overlap(fused, gemm)
    problems = []
    if d_twin > span * 2**-7:
        problems.append(f"kernel vs twin {d_twin:.3g}")
    if d_gemm > span * 2**-5:
        problems.append(f"fused vs gemm {d_gemm:.3g}")
    if e_fused > 2 * e_gemm + span * 2**-10:
        problems.append(f"fused error {e_fused:.3g} vs gemm's {e_gemm:.3g}")
    if o_fused < o_gemm - 0.02 or o_fused < 0.8:
        problems.append(f"top-10 overlap with fp32 {o_fused:.3f} (gemm {o_gemm:.3f})")
    line = (
        f"fused scorer, bf16, {len(users)} users x {model.config.n_items} items, score range {span:.3g}: "
        f"max |fused - gemm| {d_gemm:.3g}; max error vs fp32: fused {e_fused:.3g}, gemm {e_gemm:.3g}; "
        f"top-10 overlap with fp32: fused {o_fused:.4f}, gemm {o_gemm:.4f} (fused vs gemm {o_both:.4f}); "
        f"kernel vs twin {d_twin:.3g}: " + ("OK" if not problems else "MISMATCH: " + "; ".join(problems))
    )
    return not problems, line


@torch.no_grad()
def sweep(model: NeuMF, device: torch.device, repeats: int) -> None:
    chunk = min(model.config.n_users, full_rank_chunk(model, model.config.n_items, device, torch.bfloat16))
    users = torch.arange(chunk, device=device)
    widths = model.config.mlp_layers[1:]
    flop = 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:])) * chunk * model.config.n_items
    default = score_kernel.SCORE_CONFIG
    results = []
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            want = model.score_items(users)
            span = (want.max() - want.min()).item()
            for cfg in SWEEP:
                score_kernel.SCORE_CONFIG = cfg
                row = dataclasses.asdict(cfg)
                try:
                    got = model.score_items(users)  # compiles this shape
                    row["max_diff_vs_default"] = (got - want).abs().max().item()
                    del got
                    best = float("inf")
                    for _ in range(repeats):
                        sync(device)
                        start = time.perf_counter()
                        model.score_items(users)
                        sync(device)
                        best = min(best, time.perf_counter() - start)
                    row |= {"chunk_users": chunk, "best_s": best, "tflops": flop / best / 1e12}
                    row["ml20m_scoring_s"] = best * ML20M_USERS / chunk * ML20M_ITEMS / model.config.n_items
                    row["ok"] = row["max_diff_vs_default"] <= span * 2**-7
                except Exception as error:  # a shape that does not compile (resources): report, go on
                    row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                results.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        score_kernel.SCORE_CONFIG = default
    timed = [r for r in results if r.get("ok")]
    if timed:
        best = min(timed, key=lambda r: r["best_s"])
        print(json.dumps({"sweep_best": best, "default": results[0]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--users", type=int, default=627, help="users compared (627: the fp32 GEMMs peak near 45 GB)"
    )
    parser.add_argument("--items", type=int, default=ML20M_ITEMS)
    parser.add_argument("--model-users", type=int, default=ML20M_USERS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        assert torch.cuda.is_available() and kernels.use_triton(torch.zeros(1, device=device))
    model = spread_model(args.model_users, args.items, device)
    g = torch.Generator().manual_seed(1)
    users = torch.randperm(args.model_users, generator=g)[: args.users].to(device)
    ok, line = check(model, users, device)
    print(line)
    if ok and args.sweep:
        sweep(model, device, args.repeats)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
