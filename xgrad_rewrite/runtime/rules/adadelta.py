"""Adadelta: Δθ = √(u_t + ε) / √(v_t + ε) · g_t, its update recomputed from the stored averages.

torch keeps v_t (`square_avg`, the EMA of g²) and u_t (`acc_delta`, the EMA of the applied
updates²) but not g_t: the runtime caches it in the step pre-hook (maximize sign and L2 decay
included), as for RMSprop. Both averages are read after step t, so this is the next step's update
with g_{t+1} = g_t and v not yet refreshed (approximate, like Table I's RMSprop). `lr` scales it
the way torch's step does (θ ← θ − lr·Δθ), so eq. 31 applies unchanged.
"""

from __future__ import annotations

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule


def delta(batch: Batch) -> Delta:
    eps = batch.group["eps"]
    assert batch.grads is not None
    num = torch._foreach_add([st["acc_delta"] for st in batch.states], eps)
    torch._foreach_sqrt_(num)
    torch._foreach_mul_(num, batch.grads)
    den = torch._foreach_add([st["square_avg"] for st in batch.states], eps)
    torch._foreach_sqrt_(den)
    return Delta(num=num, den=den)


RULE = Rule(delta=delta, needs_grad=lambda group: True, name="Adadelta")
