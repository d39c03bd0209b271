"""Adam as one fused kernel over a list of tensors, without torch.optim.

Why not torch.optim.Adam(fused=True): it runs the same kernel (torch._fused_adam_), but its first
call imports torch._dynamo, which took 4.8 s of a 19 s run on a fresh GPU worker (measured
2026-11-22, bench/RESULTS.md). The state is three plain lists, so a trainer can shard or gather rows
of it (models/ncf/train.py keeps only its own users' rows). GradScaler accepts it: it has
`param_groups` and `step()`.
"""

from __future__ import annotations

import torch


class FusedAdam:
    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.weight_decay = weight_decay  # L2 added to the gradient, as torch.optim.Adam's (not AdamW's)
        self.param_groups = [{"params": self.params, "lr": lr}]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # One step counter per tensor, on its device: the fused kernel reads it there (no host sync).
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        torch._foreach_add_(self.steps, 1)
        torch._fused_adam_(
            self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps, lr=self.lr,
            beta1=self.beta1, beta2=self.beta2, weight_decay=self.weight_decay, eps=self.eps, amsgrad=False, maximize=False,
        )  # fmt: skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict:
        return {"exp_avg": list(self.exp_avg), "exp_avg_sq": list(self.exp_avg_sq), "steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            for mine, saved in zip(getattr(self, name), state[name], strict=True):
                mine.copy_(saved)
