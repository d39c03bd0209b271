"""Mult-VAE (Liang et al. 2018), the VAE-CF of NVIDIA's DeepLearningExamples (docs ANCHORS section 2).

Encoder [items -> 600 tanh -> 2 x 200 (mu, logvar)], decoder [200 -> 600 tanh -> items]. A user is
the binary row x of the items they liked; the input is x / ||x||, with dropout on its nonzeros.

Sparse input: the first layer is W1 (items, 600) applied to a CSR row, i.e. the sum of the rows of
W1 at the user's items, each weighted by 1/sqrt(nnz) (the L2 normalisation of a binary row) times
the dropout mask / (1 - p) (dropping an input entry is dropping a nonzero). One `embedding_bag` does
it: a batch costs O(nnz x 600), never a dense (users x items) input. The likelihood needs no dense x
either: -sum_i x_i log_softmax(logits)_i = n_u * logsumexp(logits) - sum of logits at the nonzeros.
The module knows nothing of ranks, devices or the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class VAEConfig:
    n_items: int
    hidden: int = 600  # the paper's and NVIDIA's [I -> 600 -> 200 -> 600 -> I]; wider did not help them
    latent: int = 200
    dropout: float = 0.5  # on the input's nonzeros: the paper's denoising rate, NVIDIA's default

    def __post_init__(self) -> None:
        if min(self.n_items, self.hidden, self.latent) < 1:
            raise ValueError(f"n_items, hidden and latent must be positive: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1): {self.dropout}")


@dataclass(frozen=True)
class Anneal:
    """KL weight beta(step) = min(cap, step / steps), the reference code's formula.

    `steps` sets the slope (1/steps per update), so the cap is reached after cap * steps updates:
    the paper's schedule (0.2, 200,000) reaches 0.2 at update 40,000; NVIDIA's (0.1, 15,000) at 1,500.
    """

    cap: float = 0.1
    steps: int = 15_000

    def beta(self, step: int) -> float:
        return min(self.cap, step / self.steps)


PAPER_ANNEAL = Anneal(cap=0.2, steps=200_000)  # Liang et al.: total_anneal_steps 200,000, cap 0.2
NVIDIA_ANNEAL = Anneal(cap=0.1, steps=15_000)  # DeepLearningExamples VAE-CF defaults


class MultVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = c = config
        self.encoder_in = nn.EmbeddingBag(c.n_items, c.hidden, mode="sum")  # W1 as (items, hidden) rows
        self.encoder_in_bias = nn.Parameter(torch.empty(c.hidden))
        self.encoder_out = nn.Linear(c.hidden, 2 * c.latent)  # [mu | logvar]
        self.decoder_hidden = nn.Linear(c.latent, c.hidden)
        self.decoder_out = nn.Linear(c.hidden, c.n_items)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference code's init: Glorot-uniform weights, biases N(0, 0.001^2)."""
        for weight in (self.encoder_in.weight, self.encoder_out.weight, self.decoder_hidden.weight,
                       self.decoder_out.weight):  # fmt: skip
            nn.init.xavier_uniform_(weight)
        for bias in (
            self.encoder_in_bias,
            self.encoder_out.bias,
            self.decoder_hidden.bias,
            self.decoder_out.bias,
        ):
            nn.init.normal_(bias, std=0.001)

    def get_num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def input_weights(self, rows: Tensor, counts: Tensor) -> Tensor:
        """(nnz,) weight of each nonzero: L2 normalisation of its binary row, then dropout if training.

        rows (nnz,): the batch row of each nonzero; counts (B,): nonzeros per row.
        """
        weights = counts.float().rsqrt()[rows]  # x / ||x|| for binary x
        p = self.config.dropout
        if self.training and p > 0:
            weights = weights * (torch.rand_like(weights) >= p) / (1.0 - p)
        return weights

    def first_layer(self, indices: Tensor, offsets: Tensor, weights: Tensor) -> Tensor:
        """tanh(normalize(x) @ W1 + b1) from the nonzeros alone: a weighted sum of W1's rows per user."""
        # embedding_bag runs in the weights' fp32 under autocast: the sum over a row's items stays fp32.
        h = self.encoder_in(indices, offsets, per_sample_weights=weights)  # (B, hidden)
        return torch.tanh(h + self.encoder_in_bias)

    def encode(self, indices: Tensor, offsets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """CSR rows (indices (nnz,), offsets (B,), weights (nnz,)) -> mu, logvar (B, latent)."""
        h = self.first_layer(indices, offsets, weights)  # (B, hidden)
        mu, logvar = self.encoder_out(h).float().chunk(2, dim=-1)  # (B, latent) each
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder_out(torch.tanh(self.decoder_hidden(z)))  # (B, items)

    def forward(
        self, indices: Tensor, offsets: Tensor, weights: Tensor, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> logits (B, items), mu, logvar. Training samples z = mu + noise * sigma; eval uses mu.

        `noise` (B, latent) ~ N(0, 1) may be passed in, so the caller owns every random draw.
        """
        mu, logvar = self.encode(indices, offsets, weights)
        z = mu
        if self.training:
            noise = torch.randn_like(mu) if noise is None else noise
            z = mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def multinomial_nll(logits: Tensor, rows: Tensor, items: Tensor, counts: Tensor) -> Tensor:
    """Mean over the batch of -sum_i x_i log_softmax(logits)_i, x the binary rows given as nonzeros.

    = mean(n_u * logsumexp(logits_u)) - sum(logits at the nonzeros) / B: no dense x is built, and the
    backward is softmax * n_u minus a scatter at the nonzeros. Reductions in fp32 whatever the logits.
    """
    batch, n_items = logits.shape
    lse = torch.logsumexp(logits.float(), dim=1)  # (B,)
    picked = logits.reshape(-1)[rows * n_items + items].float().sum()
    return ((counts.float() * lse).sum() - picked) / batch


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """Mean over the batch of KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions."""
    return 0.5 * (torch.exp(logvar) + mu * mu - 1.0 - logvar).sum(dim=1).mean()


def dense_first_layer(model: MultVAE, x: Tensor) -> Tensor:
    """The first layer as the paper writes it, for tests: tanh(normalize(x) @ W1 + b1), x dense (B, items)."""
    h = F.normalize(x.float(), dim=1) @ model.encoder_in.weight + model.encoder_in_bias
    return torch.tanh(h)
