"""ASGD: Δθ = (η_{t+1} / lr) · (g_t + λ·θt), the next step θ ← (1 − λη)·θ − η·g with g_{t+1} = g_t.

torch's step moves θ by its own step size η (`eta`, already updated by step t to the value the
next step uses: lr / (1 + λ·lr·t)^α), not by `lr`; dividing by lr keeps eq. 31's θ̂ = θt − lr·s·Δθ
equal to s times that step. λ (`lambd`) is ASGD's decay toward zero; an L2 `weight_decay` is
already inside the cached g_t. The average `ax` is not the iterate the forward uses: not read.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, scalar


def _floats(states: list[dict[str, Any]], key: str) -> list[float]:
    """A 0-dim state entry of each parameter as floats, with one transfer off an accelerator."""
    values = [st[key] for st in states]
    if values and isinstance(values[0], Tensor) and values[0].device.type != "cpu":
        return torch.stack([v.reshape(()).double() for v in values]).tolist()
    return [float(v) for v in values]


def delta(batch: Batch) -> Delta:
    group = batch.group
    assert batch.grads is not None
    lr = scalar(group["lr"])
    num = torch._foreach_add(batch.grads, batch.theta, alpha=group["lambd"])
    scale = [eta / lr if lr else 0.0 for eta in _floats(batch.states, "eta")]
    return Delta(num=num, scale=scale)


RULE = Rule(delta=delta, needs_grad=lambda group: True, name="ASGD")
