"""RMSprop (eq. 8): Δθ = g_t / (√v_t + ε), the update step t applied, recomputed from state.

torch keeps v_t (`square_avg`) but not g_t: the runtime caches it in a step pre-hook (maximize
sign and L2 decay included). centered: the root is √(v_t − ḡ_t²) (`grad_avg`), as torch's step.
momentum > 0: torch's step applies the buffer `momentum_buffer` = u·b + g/(…), so Δθ = b_t, the same
choice as SGD with momentum (Table I's v_t), and no gradient is needed.
"""

from __future__ import annotations

from typing import Any

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule


def _needs_grad(group: dict[str, Any]) -> bool:
    return group.get("momentum", 0) == 0


def delta(batch: Batch) -> Delta:
    group, states = batch.group, batch.states
    if not _needs_grad(group):
        return Delta(num=[st["momentum_buffer"] for st in states])
    assert batch.grads is not None
    square_avg = [st["square_avg"] for st in states]
    if group["centered"]:
        grad_avg = [st["grad_avg"] for st in states]
        den = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1)
        torch._foreach_sqrt_(den)
    else:
        den = torch._foreach_sqrt(square_avg)
    torch._foreach_add_(den, group["eps"])
    return Delta(num=batch.grads, den=den)


RULE = Rule(delta=delta, needs_grad=_needs_grad, name="RMSprop")
