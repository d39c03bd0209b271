import math

import pytest
import torch

from models.ncf.model import NeuMF, NeuMFConfig

ML20M_USERS, ML20M_ITEMS = 138_493, 26_744


def test_param_count_ml20m():
    # On the meta device: shapes and init only, no 127 MB of memory.
    with torch.device("meta"):
        model = NeuMF(NeuMFConfig(ML20M_USERS, ML20M_ITEMS))
    assert model.get_num_params() == 31_832_577  # NVIDIA's figure for the same model, ANCHORS section 1
    assert model.user_embed.weight.shape == (ML20M_USERS, 64 + 128)
    assert model.item_embed.weight.shape == (ML20M_ITEMS, 64 + 128)
    assert [tuple(m.weight.shape) for m in model.mlp] == [(256, 256), (128, 256), (64, 128)]
    assert tuple(model.final.weight.shape) == (1, 128)


def test_init_statistics():
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(3000, 2000))
    for table in (model.user_embed.weight, model.item_embed.weight):
        assert abs(table.mean().item()) < 1e-3
        assert table.std().item() == pytest.approx(0.01, rel=0.02)
    for layer in model.mlp:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot-uniform
        assert layer.weight.abs().max().item() <= bound
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
        assert torch.all(layer.bias == 0)
    bound = math.sqrt(3.0 / model.final.weight.shape[1])  # LeCun-uniform
    assert model.final.weight.abs().max().item() <= bound
    assert torch.all(model.final.bias == 0)


def test_config_validation():
    with pytest.raises(ValueError):
        NeuMFConfig(10, 10, mlp_layers=(255, 64))
    with pytest.raises(ValueError):
        NeuMFConfig(10, 10, dropout=1.0)
    with pytest.raises(ValueError):
        NeuMFConfig(0, 10)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_forward_backward_tiny(dtype):
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(7, 11, mf_dim=4, mlp_layers=(8, 6, 4), dropout=0.5))
    user = torch.randint(0, 7, (32,), dtype=dtype)
    item = torch.randint(0, 11, (32,), dtype=dtype)
    logits = model(user, item)
    assert logits.shape == (32,)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, (item % 2).float())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # only rows that were looked up get gradient
    untouched = torch.ones(7, dtype=torch.bool)
    untouched[user.long()] = False
    assert torch.all(model.user_embed.weight.grad[untouched] == 0)


def test_dropout_only_in_training_and_its_mask_follows_the_noise_key():
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(5, 6, mf_dim=4, mlp_layers=(8, 4), dropout=0.5))
    user, item = torch.arange(5), torch.arange(5)
    model.eval()
    plain = model(user, item)
    model.noise.fill_(1)
    assert torch.equal(model(user, item), plain)
    model.train()
    first = model(user, item)
    assert not torch.equal(first, plain)
    assert torch.equal(model(user, item), first)  # the same key: the same units dropped (replayable)
    model.noise.fill_(2)
    assert not torch.equal(model(user, item), first)


def test_score_candidates_matches_forward():
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(9, 30, mf_dim=8, mlp_layers=(16, 8, 4))).eval()
    with torch.no_grad():  # a trained-looking model: non-zero biases so the split first layer is tested
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    users = torch.tensor([3, 0, 8, 3], dtype=torch.int32)
    cands = torch.randint(0, 30, (4, 101), dtype=torch.int32)
    with torch.no_grad():
        got = model.score_candidates(users, cands)
        want = model(users.repeat_interleave(101), cands.reshape(-1)).reshape(4, 101)
    assert got.shape == (4, 101)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_score_candidates_trains_like_forward_on_pairs():
    """Training goes through score_candidates (layer 0's item half per item, gathered); its loss and
    every gradient must be those of the plain per-pair model, dropout masks included."""
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(9, 30, mf_dim=8, mlp_layers=(16, 8, 4), dropout=0.5)).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.noise.fill_(12345)
    users = torch.tensor([3, 0, 8, 3, 5], dtype=torch.int32)
    cands = torch.randint(0, 30, (5, 7), dtype=torch.int32)
    upstream = torch.randn(5, 7)
    (model.score_candidates(users, cands) * upstream).sum().backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    (model(users.repeat_interleave(7), cands.reshape(-1)).reshape(5, 7) * upstream).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_gmf_alone_when_no_mlp_layers() -> None:
    """mlp_layers=() is the NCF paper's GMF: the plain matrix-factorisation baseline."""
    model = NeuMF(NeuMFConfig(n_users=7, n_items=11, mf_dim=4, mlp_layers=()))
    assert model.get_num_params() == 7 * 4 + 11 * 4 + 4 + 1
    users, items = torch.arange(7), torch.randint(0, 11, (7, 3))
    expected = model.final(model.user_embed(users)[:, None] * model.item_embed(items)).squeeze(-1)
    assert torch.allclose(model(users, items), expected)
    assert torch.allclose(model(users, items[:, 0]), expected[:, 0])


def test_training_path_equals_plain_neumf_in_logits_and_every_gradient() -> None:
    """score_candidates (fused GMF logit, split first layer) against the textbook model in plain torch."""
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(9, 30, mf_dim=8, mlp_layers=(16, 8, 4), dropout=0.0)).train()
    with torch.no_grad():  # non-zero biases, so each is tested
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    users, items = torch.randint(0, 9, (6,)), torch.randint(0, 30, (6, 5))
    logits = model(users, items)
    u, i = model.user_embed.weight[users][:, None, :].expand(-1, 5, -1), model.item_embed.weight[items]
    h = torch.cat([u[..., 8:], i[..., 8:]], -1)
    for layer in model.mlp:
        h = torch.relu(layer(h))
    plain = model.final(torch.cat([u[..., :8] * i[..., :8], h], -1)).squeeze(-1)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    upstream, params = torch.randn(6, 5), list(model.parameters())
    for name, a, b in zip(
        [n for n, _ in model.named_parameters()],
        torch.autograd.grad(logits, params, upstream),
        torch.autograd.grad(plain, params, upstream),
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
