"""Adagrad: Δθ = g_t / (√G_t + ε) · 1/(1 + t·lr_decay), the update it would apply next with g_t.

G_t (`sum`) is all torch keeps, so the last gradient is cached by the runtime's step pre-hook;
the factor is the decayed learning rate of the next step (γ in eq. 31 is the next step's rate).
"""

from __future__ import annotations

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, steps


def delta(batch: Batch) -> Delta:
    group = batch.group
    assert batch.grads is not None
    den = torch._foreach_sqrt([st["sum"] for st in batch.states])
    torch._foreach_add_(den, group["eps"])
    scale = [1 / (1 + k * group["lr_decay"]) for k in steps(batch.states)]
    return Delta(num=batch.grads, den=den, scale=scale)


RULE = Rule(delta=delta, needs_grad=lambda group: True, name="Adagrad")
