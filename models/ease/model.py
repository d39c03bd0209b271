"""EASE (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019): a linear item-item model in closed form.

    G = XᵀX                      X: users x items, 0/1 (the training interactions)
    P = (G + λI)⁻¹               one Cholesky factorisation of a symmetric positive definite matrix
    B = I - P · diagMat(1/diag(P)),  so B_ij = -P_ij / P_jj off the diagonal and diag(B) = 0
    scores(x) = x B              a user is a row of items: known users and new ones alike (fold-in)

It minimises ||X - XB||² + λ||B||² under diag(B) = 0. One code path in torch: the Gram matrix is
built from dense chunks of users (a GEMM each), and the solve is torch.linalg.cholesky plus
torch.cholesky_inverse, on CPUs or CUDA alike. Memory: items² fp32 per matrix, up to four at once
while a grid of lambdas is tried (G, the factor, P, and the best B so far; B is P scaled in place):
2.9 GB each at ml-20m's 27k items, 1.6 GB at the 20k of its VAE-CF split.
The module knows nothing of files, ranks or the command line.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.common.full_rank import CSR, ScoreFn
from models.common.heldout import dense_rows

GRAM_USERS_PER_CHUNK = 4096  # users per dense (chunk, items) block: 440 MB at ml-20m's 27k items


@torch.no_grad()
def gram(train: CSR, n_items: int, chunk: int = GRAM_USERS_PER_CHUNK) -> Tensor:
    """XᵀX (items, items) fp32 of the 0/1 rows of `train`, on its device. Its entries are co-occurrence
    counts, exact in fp32 up to 2^24 users."""
    device = train.indices.device
    g = torch.zeros(n_items, n_items, device=device)
    for lo in range(0, train.rows, chunk):
        x = dense_rows(train, torch.arange(lo, min(lo + chunk, train.rows), device=device), n_items)
        g.addmm_(x.T, x)
    return g


@torch.no_grad()
def fit(g: Tensor, lam: float) -> Tensor:
    """B (items, items) for the Gram matrix `g` and L2 weight `lam` > 0 (`g` is left unchanged)."""
    if not lam > 0:
        raise ValueError(f"lambda must be > 0 (it makes G + λI positive definite), got {lam}")
    a = g.clone()
    a.diagonal().add_(lam)
    factor, info = torch.linalg.cholesky_ex(a)
    del a
    if int(info):
        raise ValueError(f"G + {lam}·I is not positive definite (pivot {int(info)}): raise lambda")
    p = torch.cholesky_inverse(factor)  # (G + λI)⁻¹
    del factor
    b = p.div_(-torch.diagonal(p).clone())  # column j over -P_jj
    b.fill_diagonal_(0.0)
    return b


@torch.no_grad()
def objective(g: Tensor, b: Tensor, lam: float) -> float:
    """||X - XB||² + λ||B||², from G alone: ||X(I - B)||² = tr((I - B)ᵀ G (I - B))."""
    r = -b
    r.diagonal().add_(1.0)  # I - B (diag(B) = 0)
    return float((r * (g @ r)).sum() + lam * (b * b).sum())


def ease_scorer(b: Tensor, rows: CSR) -> ScoreFn:
    """models/common/full_rank.py's scorer: row indices of `rows` -> (U, items) scores x B."""
    return lambda users: dense_rows(rows, users, b.shape[0]) @ b
