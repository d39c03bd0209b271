"""Mult-VAE on tiny data: shapes, gradients, the sparse first layer, the loss terms, the data contract."""

import json

import numpy as np
import pytest
import torch

from models.vaecf.data import CSRTensors, load_vae_data, row_slice, take_rows
from models.vaecf.model import (
    NVIDIA_ANNEAL,
    PAPER_ANNEAL,
    MultVAE,
    VAEConfig,
    dense_first_layer,
    kl_divergence,
    multinomial_nll,
)

ML20M_ITEMS = 20_108  # after NVIDIA's filtering (ANCHORS section 2)


def tiny_csr(seed: int = 0, users: int = 9, items: int = 30) -> CSRTensors:
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(items, size=rng.integers(1, 12), replace=False)) for _ in range(users)]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return CSRTensors.from_numpy(indptr, np.concatenate(rows), np.arange(100, 100 + users), "cpu")


def dense(csr: CSRTensors, items: int) -> torch.Tensor:
    x = torch.zeros(csr.rows, items)
    for u in range(csr.rows):
        x[u, csr.indices[csr.indptr_host[u] : csr.indptr_host[u + 1]]] = 1.0
    return x


def test_param_count_ml20m():
    with torch.device("meta"):
        model = MultVAE(VAEConfig(ML20M_ITEMS))
    i, h, z = ML20M_ITEMS, 600, 200
    assert model.get_num_params() == (i * h + h) + (h * 2 * z + 2 * z) + (z * h + h) + (h * i + i)
    assert model.encoder_in.weight.shape == (i, h)  # W1 as rows: one gathered row per input nonzero


def test_config_validation():
    for bad in ({"n_items": 0}, {"n_items": 5, "dropout": 1.0}, {"n_items": 5, "latent": 0}):
        with pytest.raises(ValueError):
            VAEConfig(**bad)


def test_anneal_schedules():
    assert NVIDIA_ANNEAL.beta(0) == 0.0
    assert NVIDIA_ANNEAL.beta(750) == pytest.approx(0.05)
    assert NVIDIA_ANNEAL.beta(1_500) == pytest.approx(0.1) and NVIDIA_ANNEAL.beta(10**6) == 0.1
    assert PAPER_ANNEAL.beta(20_000) == pytest.approx(0.1)
    assert PAPER_ANNEAL.beta(40_000) == pytest.approx(0.2) and PAPER_ANNEAL.beta(200_000) == 0.2


def test_sparse_first_layer_equals_dense_matmul():
    torch.manual_seed(0)
    csr = tiny_csr()
    model = MultVAE(VAEConfig(30, hidden=16, latent=4)).eval()  # eval: no dropout
    b = row_slice(csr, 0, csr.rows)
    sparse = model.first_layer(b.indices, b.offsets, model.input_weights(b.rows, b.counts))
    torch.testing.assert_close(sparse, dense_first_layer(model, dense(csr, 30)), rtol=1e-5, atol=1e-6)


def test_input_dropout_drops_nonzeros_and_rescales():
    torch.manual_seed(0)
    model = MultVAE(VAEConfig(30, hidden=8, latent=2, dropout=0.5)).train()
    rows, counts = torch.zeros(4000, dtype=torch.int64), torch.tensor([4000])
    w = model.input_weights(rows, counts)
    kept = w[w > 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0 / 4000**0.5))  # 1/sqrt(n) / (1 - p)
    assert 0.45 < len(kept) / 4000 < 0.55
    model.eval()
    torch.testing.assert_close(model.input_weights(rows, counts), torch.full((4000,), 1.0 / 4000**0.5))


def test_forward_backward_tiny():
    torch.manual_seed(0)
    csr = tiny_csr(users=6, items=40)
    model = MultVAE(VAEConfig(40, hidden=16, latent=4))
    b = row_slice(csr, 0, csr.rows)
    logits, mu, logvar = model(b.indices, b.offsets, model.input_weights(b.rows, b.counts))
    assert logits.shape == (6, 40) and mu.shape == logvar.shape == (6, 4)
    loss = multinomial_nll(logits, b.rows, b.indices, b.counts) + 0.2 * kl_divergence(mu, logvar)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[b.indices] = False  # rows of W1 at items no user has get no gradient: the input is sparse
    assert torch.all(model.encoder_in.weight.grad[untouched] == 0)
    assert model.encoder_in.weight.grad[~untouched].abs().sum() > 0


def test_eval_is_deterministic_and_uses_mu():
    torch.manual_seed(0)
    csr = tiny_csr()
    model = MultVAE(VAEConfig(30, hidden=16, latent=4))
    b = row_slice(csr, 0, csr.rows)
    model.eval()
    w = model.input_weights(b.rows, b.counts)
    logits, mu, _ = model(b.indices, b.offsets, w, noise=torch.randn(csr.rows, 4))
    torch.testing.assert_close(logits, model.decode(mu))
    model.train()
    noisy, _, _ = model(b.indices, b.offsets, w, noise=torch.randn(csr.rows, 4))
    assert not torch.allclose(noisy, logits)


def test_loss_terms_match_their_dense_definitions():
    torch.manual_seed(0)
    csr = tiny_csr(users=7, items=25)
    b = row_slice(csr, 0, csr.rows)
    logits = torch.randn(7, 25, dtype=torch.float64)
    x = dense(csr, 25).double()
    want = -(torch.log_softmax(logits, 1) * x).sum(1).mean()
    torch.testing.assert_close(multinomial_nll(logits, b.rows, b.indices, b.counts).double(), want)
    mu, logvar = torch.randn(7, 3), torch.randn(7, 3)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(7, 3), torch.ones(7, 3))
    torch.testing.assert_close(
        kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1).mean()
    )


def test_row_slice_and_take_rows():
    csr = tiny_csr(users=9)
    order = torch.tensor([4, 0, 8, 3])
    shard = take_rows(csr, order)
    x, xs = dense(csr, 30), dense(shard, 30)
    assert torch.equal(xs, x[order])
    b = row_slice(shard, 1, 3)
    got = torch.zeros(2, 30)
    got[b.rows, b.indices] = 1.0
    assert torch.equal(got, x[order[1:3]])
    assert b.offsets.tolist() == [0, int(b.counts[0])]


def test_loader_refuses_other_protocols(tmp_path):
    # (an ncf folder is read as the same rows: tests/test_ease.py)
    (tmp_path / "manifest.json").write_text(json.dumps({"protocol": "other", "counts": {}}))
    with pytest.raises(SystemExit, match="holds the 'other' protocol; this trainer needs 'vaecf'"):
        load_vae_data(tmp_path)
    with pytest.raises(SystemExit, match="no manifest.json"):
        load_vae_data(tmp_path / "nowhere")
