"""AdaBelief (eq. 21) and AdaM3 (eq. 25), the project's own optimizers in xgrad_rewrite.optim.

AdaBelief: Δθ = m̂_t / (√ŝ_t + ε) with ŝ_t = s_t/(1−β2^t) (`exp_avg_var`, ε already inside s).
AdaM3: Δθ = m̂_t / √v̂_t (`exp_avg_sq`, the EMA of m², ε inside v, none outside the root).
Decoupled decay is dropped by default, as for AdamW; `keep_decay=True` keeps it.
"""

from __future__ import annotations

import torch

from xgrad_rewrite.runtime.rules.adam import decoupled_decay
from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, adam_delta, scalar, steps


def adabelief_rule(*, keep_decay: bool = False) -> Rule:
    def delta(batch: Batch) -> Delta:
        group, states = batch.group, batch.states
        beta1, beta2 = (scalar(b) for b in group["betas"])
        t = steps(states)
        m, s = [st["exp_avg"] for st in states], [st["exp_avg_var"] for st in states]
        delta = adam_delta(m, s, beta1, beta2, group["eps"], t)
        delta.decay = decoupled_decay(group, keep_decay)
        return delta

    return Rule(delta=delta, name="AdaBelief")


def adam3_rule(*, keep_decay: bool = False) -> Rule:
    def delta(batch: Batch) -> Delta:
        group, states = batch.group, batch.states
        beta1, beta2 = (scalar(b) for b in group["betas"])
        t = steps(states)
        den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
        torch._foreach_div_(den, [(1 - beta2**k) ** 0.5 for k in t])
        return Delta(
            num=[st["exp_avg"] for st in states],
            den=den,
            scale=[1 / (1 - beta1**k) for k in t],
            decay=decoupled_decay(group, keep_decay),
        )

    return Rule(delta=delta, name="AdaM3")


ADABELIEF = adabelief_rule()
ADAM3 = adam3_rule()
