"""The shared engine: gather parameters with state, compute Δθ by rule, stash θt, write θ̂ in place.

Two steps kept apart so other back ends can plug in (the fused path, `fused.py`, replaces apply):
`compute(optimizer, rule, record)` yields `(Batch, Delta, lr)` per param group × device × dtype and
never writes anything; `apply(batch, delta, coef, record)` stashes θt and writes
θ̂ = θt − coef·Δθ (coef = lr·s) with one `_foreach_addcdiv_` / `_foreach_add_`. `materialize`
turns a Delta into plain Δθ tensors for `directions` (the FX path).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule


@dataclass
class Record:
    """Per-optimizer data, kept outside `optimizer.state` so `state_dict()` never sees it."""

    stash: list[tuple[list[Tensor], list[Tensor]]] | None = None
    grads: dict[Tensor, Tensor] = field(default_factory=dict)  # keyed like optimizer.state
    buffers: dict[Tensor, Tensor] = field(default_factory=dict)  # stash storage, reused
    active: bool = False
    hook: Any = None

    @property
    def predicted(self) -> bool:
        return self.stash is not None


def _theta(params: list[Tensor], record: Record) -> list[Tensor]:
    """θt for these params: the stashed copy while predicted, else the params themselves."""
    if not record.stash:
        return params
    saved = {id(p): c for ps, cs in record.stash for p, c in zip(ps, cs, strict=True)}
    return [saved.get(id(p), p) for p in params]


def _dtensor_type() -> type | None:
    """DTensor if this process already imported it (FSDP2, tensor parallel), else None."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def _local(t: Any, dtensor: type | None) -> Any:
    """A DTensor's local shard, which in-place ops write through; anything else unchanged.

    DTensor has no sharding rule for `_foreach_copy_`, and Δθ is element-wise, so the engine
    works on the shards each rank owns.
    """
    return t._local_tensor if dtensor is not None and isinstance(t, dtensor) else t


def compute(
    optimizer: torch.optim.Optimizer, rule: Rule, record: Record
) -> Iterator[tuple[Batch, Delta, float | Tensor]]:
    """Δθ for every parameter that has state (and a cached gradient where the rule needs one)."""
    state = optimizer.state
    dtensor = _dtensor_type()
    for group in optimizer.param_groups:
        needs_grad = rule.needs_grad(group)
        by_key: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in group["params"]:
            if needs_grad:
                if p not in record.grads:
                    continue
            elif not state.get(p):
                continue
            by_key.setdefault((p.device, p.dtype), []).append(p)
        for params in by_key.values():
            states = [state.get(p, {}) for p in params]
            grads = [record.grads[p] for p in params] if needs_grad else None
            if dtensor is not None and isinstance(params[0], dtensor):
                states = [{k: _local(v, dtensor) for k, v in st.items()} for st in states]
                params = [_local(p, dtensor) for p in params]
            batch = Batch(
                params=params,
                states=states,
                group=group,
                grads=grads,
                theta=_theta(params, record),
            )
            lr = group["lr"]  # None: the optimizer sets its own step (Δθ holds it), coef = s
            yield batch, rule.delta(batch), 1.0 if lr is None else lr


def _per_tensor(x: float | list[float], n: int) -> list[float]:
    return list(x) if isinstance(x, list) else [x] * n


def _like(
    store: dict[Tensor, Tensor], params: list[Tensor], likes: list[Tensor] | None = None
) -> list[Tensor]:
    """One buffer per param from `store`, (re)allocated only when missing or of another layout.

    Reusing them keeps a stash copy from costing an allocation (and, on CPU, page faults) each
    step; the price is that the stash memory (1x the predicted params) stays between steps.
    """
    out = []
    for p, like in zip(params, params if likes is None else likes, strict=True):
        buf = store.get(p)
        layout = (like.shape, like.dtype, like.device)
        if buf is None or (buf.shape, buf.dtype, buf.device) != layout:
            buf = store[p] = torch.empty_like(like, memory_format=torch.preserve_format)
        out.append(buf)
    return out


def apply(batch: Batch, delta: Delta, coef: float, record: Record) -> None:
    """Stash θt, then θ̂ = θt − coef·Δθ in place (never rebinding `p.data`)."""
    params = batch.params
    stash = _like(record.buffers, params)
    torch._foreach_copy_(stash, params)
    assert record.stash is not None
    record.stash.append((params, stash))
    if delta.decay:
        torch._foreach_mul_(params, 1.0 - coef * delta.decay)
    if delta.den is None:
        if isinstance(delta.scale, list):
            torch._foreach_add_(
                params, torch._foreach_mul(delta.num, [-coef * c for c in delta.scale])
            )
        else:
            torch._foreach_add_(params, delta.num, alpha=-coef * delta.scale)
    else:
        scalars = [-coef * c for c in _per_tensor(delta.scale, len(params))]
        torch._foreach_addcdiv_(params, delta.num, delta.den, scalars)


def materialize(batch: Batch, delta: Delta) -> list[Tensor]:
    """Δθ as new tensors (scale·num/den + decay·θ), for `directions`; reads, never writes."""
    n = len(batch.params)
    if delta.den is None:
        d = torch._foreach_mul(delta.num, _per_tensor(delta.scale, n))
    else:
        d = torch._foreach_div(delta.num, delta.den)
        torch._foreach_mul_(d, _per_tensor(delta.scale, n))
    if delta.decay:
        torch._foreach_add_(d, batch.theta, alpha=delta.decay)
    return d


def restore(record: Record) -> None:
    """Write θt back bit for bit and drop the stash."""
    if record.stash is None:
        return
    for params, stash in record.stash:
        torch._foreach_copy_(params, stash)
    record.stash = None


def cache_grads(optimizer: torch.optim.Optimizer, rule: Rule, record: Record) -> None:
    """Keep g_t as the coming step uses it (maximize sign, L2 decay at θt), for rules needing it."""
    for group in optimizer.param_groups:
        if not rule.needs_grad(group):
            continue
        params = [p for p in group["params"] if p.grad is not None and not p.grad.is_sparse]
        if not params:
            continue
        dtensor = _dtensor_type()
        grads = [_local(p.grad, dtensor) for p in params]
        cached = _like(record.grads, params, grads)  # keyed by param, shaped like its shard
        torch._foreach_copy_(cached, grads)
        if group.get("maximize", False):
            torch._foreach_neg_(cached)
        weight_decay = group.get("weight_decay", 0.0)
        if weight_decay and not (rule.decoupled_decay or group.get("decoupled_weight_decay")):
            theta = [_local(p, dtensor) for p in params]
            torch._foreach_add_(cached, theta, alpha=float(weight_decay))
