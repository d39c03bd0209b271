"""FusedAdam against torch.optim.Adam: the same kernel, so bit-identical parameters and state."""

from __future__ import annotations

import torch

from models.common.adam import FusedAdam


def test_fused_adam_equals_torch_adam_and_round_trips_its_state() -> None:
    torch.manual_seed(0)
    ours = [torch.randn(7, 3), torch.randn(5)]
    theirs = [p.clone() for p in ours]
    mine = FusedAdam(ours, lr=0.01, betas=(0.25, 0.5), eps=1e-8)
    reference = torch.optim.Adam(theirs, lr=0.01, betas=(0.25, 0.5), eps=1e-8, fused=True)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        mine.step()
        reference.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    state = reference.state_dict()["state"]
    assert all(torch.equal(mine.exp_avg_sq[i], state[i]["exp_avg_sq"]) for i in range(2))

    copy = FusedAdam([p.clone() for p in ours], lr=0.01, betas=(0.25, 0.5), eps=1e-8)
    copy.load_state_dict(mine.state_dict())
    g = [torch.randn_like(p) for p in ours]
    for p, q, gi in zip(ours, copy.params, g):
        p.grad, q.grad = gi.clone(), gi.clone()
    mine.step()
    copy.step()
    assert all(torch.equal(p, q) for p, q in zip(ours, copy.params))
