"""Adafactor (torch 2.13's `torch.optim.Adafactor`): its next update from the factored moment.

torch's step t+1 (torch/optim/_adafactor.py) moves θ by α/c · g/√V̂ with
- V̂: the second-moment estimate, for a matrix (last two dims) the outer product of the row and
  column EMAs of g² over the row mean, R·C / mean(R) (`row_var`, `col_var`), for a vector the
  plain EMA (`variance`); clamped below by ε1² before the root (ε1 = the dtype's eps by default);
- α = max(ε2, RMS(θt)) · ρ, the relative step ρ = min(lr, 1/√(t+1));
- c = max(1, RMS(g/√V̂) / d), the update clipping.
Δθ is that update over lr (so θ̂ = θt − lr·s·Δθ is s such steps), from V̂ after step t and the
cached g_t: the next step with g_{t+1} = g_t and V̂ not yet refreshed (approximate, as Table I's
RMSprop). Its weight decay is decoupled (θ ← (1 − lr·λ)θ): dropped by default as for AdamW
(eq. 20), kept exactly with `adafactor_rule(keep_decay=True)`. One loop over the parameters:
V̂ is a per-matrix product and c, α need one norm each (torch's own step does the same).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, scalar


def second_moment(state: dict, eps1: float) -> Tensor:
    """V̂ as a new tensor (factored for matrices, as torch's step builds it)."""
    row, col = state.get("row_var"), state.get("col_var")
    if row is not None and col is not None:
        var = row @ col
        return var.div_(row.mean(dim=-2, keepdim=True).clamp_(min=eps1))
    return state["variance"].clone()


def adafactor_rule(*, keep_decay: bool = False) -> Rule:
    """torch Adafactor's rule; `keep_decay=True` keeps its decoupled weight decay in Δθ."""

    def delta(batch: Batch) -> Delta:
        group = batch.group
        assert batch.grads is not None
        lr = scalar(group["lr"])
        eps1, eps2 = group["eps"]
        num, scale = [], []
        for theta, st, g in zip(batch.theta, batch.states, batch.grads, strict=True):
            e1 = torch.finfo(theta.dtype).eps if eps1 is None else eps1
            update = second_moment(st, e1).clamp_(min=e1 * e1).rsqrt_().mul_(g)
            clip = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * group["d"]))
            rho = min(lr, 1 / (float(st["step"]) + 1) ** 0.5)
            alpha = max(eps2, theta.norm(2).item() / theta.numel() ** 0.5) * rho
            num.append(update)
            scale.append(alpha / (clip * lr) if lr else 0.0)
        decay = float(group["weight_decay"]) if keep_decay else 0.0
        return Delta(num=num, scale=scale, decay=decay)

    return Rule(delta=delta, needs_grad=lambda group: True, name="Adafactor", decoupled_decay=True)


RULE = adafactor_rule()
