"""NeuMF (He et al. 2017) with dropout, as trained by NVIDIA's NCF example (see docs ANCHORS section 1).

GMF branch: user and item factors multiplied elementwise. MLP branch: user and item embeddings
concatenated, then Linear -> ReLU -> Dropout layers. The two branches are concatenated and a final
Linear gives one logit per (user, item) pair. The module knows nothing of ranks, devices or the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.ncf.gather_kernels import gather_add_relu_dropout, gather_split
from models.ncf.gmf_kernel import gmf_logit
from models.ncf.kernels import linear_relu_dropout, use_triton
from models.ncf.score_kernel import SCORE_DTYPES_CUDA, mlp_scores, mlp_scores_supported


@dataclass(frozen=True)
class NeuMFConfig:
    n_users: int
    n_items: int
    mf_dim: int = 64  # GMF factors: the NCF paper's best size and NVIDIA's default
    mlp_layers: tuple[int, ...] = (256, 256, 128, 64)  # [0] = user+item width; NVIDIA's; () = GMF alone
    dropout: float = 0.5  # after every MLP ReLU; NVIDIA's default, needed to reach HR@10 0.9562 on ml-20m

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_items < 1 or self.mf_dim < 1:
            raise ValueError(f"n_users, n_items and mf_dim must be positive: {self}")
        if self.mlp_layers and (
            len(self.mlp_layers) < 2 or self.mlp_layers[0] % 2 or min(self.mlp_layers) < 1
        ):
            raise ValueError(
                f"mlp_layers needs >= 2 positive sizes, the first even (or none): {self.mlp_layers}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1): {self.dropout}")

    @property
    def embed_dim(self) -> int:
        """Width of one row of the fused user (or item) table: GMF part, then MLP part."""
        return self.mf_dim + (self.mlp_layers[0] // 2 if self.mlp_layers else 0)


def lecun_uniform_(weight: Tensor) -> Tensor:
    """U(-sqrt(3/fan_in), +sqrt(3/fan_in)): variance 1/fan_in, as Keras' lecun_uniform."""
    bound = math.sqrt(3.0 / weight.shape[1])
    return nn.init.uniform_(weight, -bound, bound)


class NeuMF(nn.Module):
    def __init__(self, config: NeuMFConfig):
        super().__init__()
        self.config = config
        c = config
        # The paper's 4 tables (MF-user, MLP-user, MF-item, MLP-item) fused into 2: row u of user_embed
        # is [MF-user u | MLP-user u]. Same parameters, same init, same model; but one gather per side
        # instead of two, so half the embedding kernels forward and backward.
        self.user_embed = nn.Embedding(c.n_users, c.embed_dim)
        self.item_embed = nn.Embedding(c.n_items, c.embed_dim)
        self.mlp = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(c.mlp_layers[:-1], c.mlp_layers[1:], strict=False)
        )
        # Dropout's mask is a hash of (noise, layer, element) (models/ncf/kernels.py): the trainer sets
        # `noise` before each step, so a replayed step drops the same units, and a CUDA graph replay
        # reads the new value in place. Not saved with the weights.
        self.register_buffer("noise", torch.zeros((), dtype=torch.int64), persistent=False)
        self.final = nn.Linear(c.mf_dim + (c.mlp_layers[-1] if c.mlp_layers else 0), 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.user_embed.weight, 0.0, 0.01)
        nn.init.normal_(self.item_embed.weight, 0.0, 0.01)
        for layer in self.mlp:
            nn.init.xavier_uniform_(layer.weight)  # Glorot-uniform
            nn.init.zeros_(layer.bias)
        lecun_uniform_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def embed(self, table: nn.Embedding, index: Tensor, width: int | None = None) -> tuple[Tensor, Tensor]:
        """(GMF part, MLP part) of the rows (up to column `width`), in the compute dtype (bf16 under
        autocast); gradients reach the fp32 table."""
        where = index.device.type
        dtype = torch.get_autocast_dtype(where) if torch.is_autocast_enabled(where) else None
        return gather_split(table.weight, index, self.config.mf_dim, dtype, width)

    def get_num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _gmf(self, u_mf: Tensor, i_mf: Tensor) -> Tensor:
        """The GMF branch through its half of the final layer: (U, mf), (U, C, mf) -> (U, C) logits,
        one fused op (models/ncf/gmf_kernel.py), so the (U, C, mf) product never reaches memory."""
        return gmf_logit(u_mf, i_mf, self.final.weight[0, : self.config.mf_dim])

    def _head(self, gmf: Tensor, h: Tensor | None) -> Tensor:
        """The MLP after its first activation, then the rest of the final layer: the GMF logits (...)
        and h (..., mlp[1]) -> (...)."""
        if h is None:  # GMF alone: the NCF paper's generalised matrix factorisation
            return gmf + self.final.bias.to(gmf.dtype)
        for index, layer in enumerate(self.mlp[1:], start=1):
            h = linear_relu_dropout(h, layer, self.noise, index, self.config.dropout, self.training)
        w = self.final.weight[:, self.config.mf_dim :]  # (1, mlp[-1]): the MLP's half
        return gmf + F.linear(h, w, self.final.bias).squeeze(-1)

    def forward(self, user: Tensor, item: Tensor) -> Tensor:
        """Logits (B,) for pairs user (B,), item (B,); or (B, C) for user (B,) against items (B, C).

        Training passes each positive with its negatives as one row (B, 1+k), evaluation each user's
        101 candidates: the same shared-user path serves both (see score_candidates).
        """
        if item.ndim == 2:
            return self.score_candidates(user, item)
        u_mf, u_mlp = self.embed(self.user_embed, user)  # (B, mf), (B, mlp0/2)
        i_mf, i_mlp = self.embed(self.item_embed, item)
        gmf = self._gmf(u_mf, i_mf[:, None, :])[:, 0]  # (B,)
        if not self.mlp:
            return self._head(gmf, None)
        h = linear_relu_dropout(
            torch.cat([u_mlp, i_mlp], dim=1), self.mlp[0], self.noise, 0, self.config.dropout, self.training
        )
        return self._head(gmf, h)  # (B,)

    def score_candidates(self, users: Tensor, candidates: Tensor) -> Tensor:
        """Logits (U, C) for users (U,) against their candidate items (U, C): training and evaluation.

        Equal to forward on the repeated users, without repeating work: each user row is gathered once
        and its share of the first MLP layer (W[:, :mlp0/2] @ u) computed once per user, not C times;
        the item share (W[:, mlp0/2:] @ i) is computed once per item of the catalogue, not once per
        candidate, and gathered (models/ncf/gather_kernels.py: gather_add_relu_dropout).
        """
        mf = self.config.mf_dim
        u_mf, u_mlp = self.embed(self.user_embed, users)  # (U, mf), (U, mlp0/2)
        i_mf = self.embed(self.item_embed, candidates, width=mf)[0]  # (U, C, mf): the GMF columns only
        gmf = self._gmf(u_mf, i_mf)  # (U, C)
        if not self.mlp:
            return self._head(gmf, None)
        first = self.mlp[0]
        half = first.in_features // 2
        hu = F.linear(u_mlp, first.weight[:, :half], first.bias)  # (U, mlp1): the bias once per user
        per_item = F.linear(self.item_embed.weight[:, mf:], first.weight[:, half:])  # (n_items, mlp1)
        h = gather_add_relu_dropout(
            per_item, candidates, hu, self.noise, 0, self.config.dropout, self.training
        )
        return self._head(gmf, h)

    def fused_scoring(self, device: torch.device | str, dtype: torch.dtype | None = None) -> bool:
        """Whether score_items runs the fused Triton scorer on `device` in compute dtype `dtype` (None:
        fp32, no autocast) with gradients off: an MLP that score_kernel.mlp_scores_supported takes, and CUDA
        in bf16 or fp16 (Triton's interpreter: any dtype); else the GEMMs."""
        probe = torch.empty(0, device=device)
        if not (self.mlp and use_triton(probe) and mlp_scores_supported(self.config.mlp_layers)):
            return False
        return probe.device.type != "cuda" or dtype in SCORE_DTYPES_CUDA

    def score_items(self, users: Tensor, items: Tensor | None = None, *, fused: bool | None = None) -> Tensor:
        """Logits (U, I) of users (U,) against the same items (I,) (all items when None): full ranking.

        forward() on every pair, up to rounding, with the work shared across pairs: the GMF term is one
        (U, mf) x (mf, I) product, and the first MLP layer's item half is computed once per item. Two
        formulations of the MLP branch:
        - fused (`fused=None`: see fused_scoring; CUDA in bf16, gradients off): the first layer's
          user and item halves once (hu = W_u u + b per user, hi = W_i i per item), then one Triton
          kernel runs relu(hu + hi) through the remaining layers for every pair on chip and adds the
          logit to the GMF term (score_kernel.mlp_scores); nothing but the (U, I) fp32 output is written.
          `fused=True` forces it (its torch twin where Triton does not run), `fused=False` forbids it.
        - GEMMs (CPUs, fp32 on GPUs, autograd): the first layer's output relu(W_u u + W_i i + b) is one
          GEMM with a fused ReLU: [i, 1] (I, h/2+1) times [W_i^T; W_u u + b] stacked for every user
          ((h/2+1, U*h1)); its rows come out (item, user)-major, ready for the remaining layers as plain
          GEMMs (bias and ReLU in the epilogue). It holds (I*U, h1) activations: memory-bound.
        """
        c, dev = self.config, users.device
        items = torch.arange(c.n_items, device=dev) if items is None else items
        if fused is None:
            fused = not torch.is_grad_enabled() and self.fused_scoring(dev, self.compute_dtype(dev))
        if fused and self.mlp:
            return mlp_scores(*self.fused_inputs(users, items))
        u_mf, u_mlp = self.embed(self.user_embed, users)  # (U, mf), (U, mlp0/2)
        i_mf, i_mlp = self.embed(self.item_embed, items)  # (I, mf), (I, mlp0/2)
        w = self.final.weight  # (1, mf + mlp[-1])
        gmf = (u_mf * w[0, : c.mf_dim].to(u_mf.dtype)) @ i_mf.T  # (U, I)
        if not self.mlp:
            return gmf.float() + self.final.bias.float()
        first, dtype = self.mlp[0], i_mlp.dtype
        half, n_users, n_items = first.in_features // 2, len(users), len(items)
        hu = F.linear(u_mlp, first.weight[:, :half].to(dtype), first.bias.to(dtype))  # (U, h1)
        pad = -(half + 1) % 8  # K a multiple of 8: the tensor-core path of the GEMM
        a = torch.cat([i_mlp, i_mlp.new_ones(n_items, 1), i_mlp.new_zeros(n_items, pad)], dim=1)  # (I, K)
        w_item = first.weight[:, half:].T.to(dtype)[:, None, :].expand(half, n_users, -1)  # (h/2, U, h1)
        b = torch.cat([w_item, hu[None], hu.new_zeros(pad, *hu.shape)])  # (K, U, h1)
        h = torch._addmm_activation(hu.new_zeros(()), a, b.reshape(len(b), -1))  # (I, U*h1): relu fused
        h = h.view(n_items * n_users, -1)
        for layer in self.mlp[1:]:
            h = torch._addmm_activation(layer.bias.to(dtype), h, layer.weight.T.to(dtype))  # (I*U, h)
        mlp = F.linear(h, w[:, c.mf_dim :].to(dtype), self.final.bias.to(dtype)).view(n_items, n_users)
        return gmf.float() + mlp.T.float()

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype embed() gives on `device`: autocast's when it is on, else the tables'."""
        where = device.type
        return (
            torch.get_autocast_dtype(where)
            if torch.is_autocast_enabled(where)
            else self.user_embed.weight.dtype
        )

    def fused_inputs(self, users: Tensor, items: Tensor) -> tuple:
        """score_kernel.mlp_scores' arguments for score_items' fused formulation: the per-user and per-item
        halves of the first layer in fp32 (small GEMMs, autocast off), the item half and the later
        layers' weights rounded to the compute dtype for the kernel's tensor cores, and as the output's
        starting value the GMF term plus the final bias."""
        c = self.config
        if not mlp_scores_supported(c.mlp_layers):
            raise ValueError(f"the fused scorer does not take mlp_layers {c.mlp_layers}")
        u_mf, u_mlp = self.embed(self.user_embed, users)  # (U, mf), (U, mlp0/2)
        i_mf, i_mlp = self.embed(self.item_embed, items)  # (I, mf), (I, mlp0/2)
        mf, dtype = c.mf_dim, i_mlp.dtype
        first, w = self.mlp[0], self.final.weight.float()
        half = first.in_features // 2
        with torch.autocast(u_mlp.device.type, enabled=False):
            out = torch.addmm(self.final.bias.float(), u_mf.float() * w[0, :mf], i_mf.float().T)  # (U, I)
            hu = F.linear(u_mlp.float(), first.weight[:, :half].float(), first.bias.float())  # (U, h1)
            hi = F.linear(i_mlp.float(), first.weight[:, half:].float()).to(dtype)  # (I, h1)
        hidden = [(layer.weight.T.to(dtype).contiguous(), layer.bias.float()) for layer in self.mlp[1:]]
        return out, hi, hu, hidden, w[0, mf:]
