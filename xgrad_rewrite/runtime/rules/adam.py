"""Adam (eq. 12), AdamW (eq. 16/20), Adamax, NAdam, RAdam: Δθ = the update step t applied.

Adam/AdamW: Δθ = m̂_t / (√v̂_t + ε) (Table I); amsgrad reads `max_exp_avg_sq`. L2 weight decay is
already inside the moments. Decoupled decay (AdamW, or any group with `decoupled_weight_decay`)
is dropped from the prediction by default, as the paper does (γλ ≈ 0, eq. 19→20);
`adam_rule(keep_decay=True)` keeps it exactly: Δθ = m̂/(√v̂+ε) + λ·θt, i.e.
θ̂ = (1 − γsλ)·θt − γs·m̂/(√v̂+ε). For AdamW use
`register(torch.optim.AdamW, adamw_rule(keep_decay=True))`: AdamW's decay is decoupled whatever its
groups say (torch before 2.6 has no `decoupled_weight_decay` key in them).
Adamax: Δθ = m_t / ((1−β1^t)·u_t). RAdam: the rectified update of step t (plain m̂_t while
ρ_t ≤ 5). NAdam: step t's update, (1−μ_t)/(1−Π_t)·g_t + μ_{t+1}/(1−Π_t·μ_{t+1})·m_t over
√v̂_t + ε, which needs the cached last gradient g_t.
"""

from __future__ import annotations

from typing import Any

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, adam_delta, scalar, steps


def decoupled_decay(group: dict[str, Any], keep_decay: bool, decoupled: bool = False) -> float:
    """λ to keep in Δθ: only for a decoupled decay (an L2 decay is inside the state already),
    that of an optimizer that always decouples it or of a group flagged so."""
    if keep_decay and (decoupled or group.get("decoupled_weight_decay", False)):
        return float(group["weight_decay"])
    return 0.0


def adam_rule(*, keep_decay: bool = False, decoupled: bool = False) -> Rule:
    """Table I's Adam/AdamW rule; `keep_decay=True` keeps a decoupled decay exactly.

    `decoupled=True` (what `adamw_rule` passes) treats every group's decay as decoupled.
    """

    def delta(batch: Batch) -> Delta:
        group, states = batch.group, batch.states
        beta1, beta2 = (scalar(b) for b in group["betas"])
        t = steps(states)
        key = "max_exp_avg_sq" if group.get("amsgrad", False) else "exp_avg_sq"
        m, v = [st["exp_avg"] for st in states], [st[key] for st in states]
        delta = adam_delta(m, v, beta1, beta2, group["eps"], t)
        delta.decay = decoupled_decay(group, keep_decay, decoupled)
        return delta

    name = ("AdamW" if decoupled else "Adam") + (" keep_decay" if keep_decay else "")
    return Rule(delta=delta, name=name, decoupled_decay=decoupled)


def adamw_rule(*, keep_decay: bool = False) -> Rule:
    """AdamW's rule: its decay is always decoupled, flagged in its groups or not (torch < 2.6)."""
    return adam_rule(keep_decay=keep_decay, decoupled=True)


def adamax_delta(batch: Batch) -> Delta:
    beta1 = scalar(batch.group["betas"][0])
    return Delta(
        num=[st["exp_avg"] for st in batch.states],
        den=[st["exp_inf"] for st in batch.states],
        scale=[1 / (1 - beta1**k) for k in steps(batch.states)],
    )


def radam_rule(*, keep_decay: bool = False) -> Rule:
    def delta(batch: Batch) -> Delta:
        group, states = batch.group, batch.states
        beta1, beta2 = (scalar(b) for b in group["betas"])
        rho_inf = 2 / (1 - beta2) - 1
        den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
        torch._foreach_add_(den, group["eps"])
        scale = []
        for i, k in enumerate(steps(states)):
            bc1, bc2 = 1 - beta1**k, 1 - beta2**k
            rho = rho_inf - 2 * k * beta2**k / bc2
            if rho > 5.0:
                rect = (
                    (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
                ) ** 0.5
                scale.append(rect * bc2**0.5 / bc1)
            else:  # torch's unrectified early steps: θ ← θ − γ·m̂
                den[i].fill_(1)
                scale.append(1 / bc1)
        return Delta(
            num=[st["exp_avg"] for st in states],
            den=den,
            scale=scale,
            decay=decoupled_decay(group, keep_decay),
        )

    return Rule(delta=delta, name="RAdam")


def nadam_rule(*, keep_decay: bool = False) -> Rule:
    def delta(batch: Batch) -> Delta:
        group, states = batch.group, batch.states
        assert batch.grads is not None
        beta1, beta2 = (scalar(b) for b in group["betas"])
        psi = group["momentum_decay"]
        t = steps(states)
        a, b = [], []
        for k, st in zip(t, states, strict=True):
            mu = beta1 * (1.0 - 0.5 * 0.96 ** (k * psi))
            mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((k + 1) * psi))
            prod = float(st["mu_product"])
            a.append((1.0 - mu) / (1.0 - prod))
            b.append(mu_next / (1.0 - prod * mu_next))
        num = torch._foreach_mul(batch.grads, a)
        torch._foreach_add_(num, torch._foreach_mul([st["exp_avg"] for st in states], b))
        v = [st["exp_avg_sq"] for st in states]
        delta = adam_delta(num, v, 0.0, beta2, group["eps"], t)  # β1=0: no m bias correction
        delta.decay = decoupled_decay(group, keep_decay)
        return delta

    return Rule(delta=delta, needs_grad=lambda group: True, name="NAdam")


ADAM = adam_rule()
ADAMAX = Rule(delta=adamax_delta, name="Adamax")
RADAM = radam_rule()
NADAM = nadam_rule()
