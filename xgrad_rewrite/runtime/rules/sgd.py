"""SGD (eq. 4): Δθ = v_t, the momentum buffer (weight decay and dampening already inside it).

nesterov: torch steps with g + u·v_t, but Table I and the authors' code predict with v_t alone; we
follow the paper (nesterov changes how the step uses v, not the prediction). Without momentum there
is no buffer: Δθ is the last applied update g_t (maximize sign and L2 decay included), cached by the
runtime's step pre-hook.
"""

from __future__ import annotations

from typing import Any

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule


def _no_momentum(group: dict[str, Any]) -> bool:
    return group.get("momentum", 0) == 0


def delta(batch: Batch) -> Delta:
    if _no_momentum(batch.group):
        assert batch.grads is not None
        return Delta(num=batch.grads)
    return Delta(num=[st["momentum_buffer"] for st in batch.states])


RULE = Rule(delta=delta, needs_grad=_no_momentum, name="SGD")
