"""Rprop: Δθ = sign(prev) · clip(η_t · η₊, Γmin, Γmax) / lr, Rprop's next step if no sign flips.

Rprop keeps, per element, its step size η_t (`step_size`) and the gradient step t used (`prev`,
zeroed where step t saw a sign change; maximize sign included). Its next step multiplies η by η₊
where the new gradient keeps prev's sign, by η₋ where it flips, by 1 where prev is 0, then moves
by sign(g)·η. Assuming every sign persists (g_{t+1} has g_t's signs, the same assumption Table I
makes with g_{t+1} ≈ g_t), that step is exactly sign(prev)·clip(η_t·η₊): exact where prev ≠ 0;
where prev = 0 (a sign change at step t) the direction is unknown and the prediction is 0.
`rprop_rule(next_step=False)` predicts the update step t applied instead, sign(prev)·η_t, which is
exact with no assumption. Rprop ignores `lr` after its first step (it only seeds η), so Δθ is
divided by lr: θ̂ = θt − lr·s·Δθ moves s Rprop steps. No gradient cache is needed.
"""

from __future__ import annotations

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, scalar


def rprop_rule(*, next_step: bool = True) -> Rule:
    """Rprop's rule; `next_step=False` predicts the update step t applied (sign(prev)·η_t)."""

    def delta(batch: Batch) -> Delta:
        group = batch.group
        step_sizes = [st["step_size"] for st in batch.states]
        num = torch._foreach_sign([st["prev"] for st in batch.states])
        if next_step:
            _, eta_plus = group["etas"]
            lo, hi = group["step_sizes"]
            nxt = torch._foreach_mul(step_sizes, eta_plus)
            torch._foreach_clamp_min_(nxt, lo)
            torch._foreach_clamp_max_(nxt, hi)
            torch._foreach_mul_(num, nxt)
        else:
            torch._foreach_mul_(num, step_sizes)
        lr = scalar(group["lr"])
        return Delta(num=num, scale=1.0 / lr if lr else 0.0)

    return Rule(delta=delta, name="Rprop" if next_step else "Rprop (step t)")


RULE = rprop_rule()
