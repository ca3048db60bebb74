"""The rule interface: a `Batch` of parameters in, a `Delta` (Δθ as num/den·scale) out."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class Batch:
    """Parameters of one param group that share a device and dtype, with what a rule may read.

    `grads` is the last gradient the optimizer's step used (sign-flipped for `maximize`, L2 weight
    decay `λ·θ` added unless the group decouples it), present only for rules with `needs_grad`.
    `theta` are the weights θt (the stash while predicted, else the params): use it, never
    `params`, for terms such as AdamW's decoupled decay.
    """

    params: list[Tensor]
    states: list[dict[str, Any]]
    group: dict[str, Any]
    grads: list[Tensor] | None = None
    theta: list[Tensor] = field(default_factory=list)


@dataclass
class Delta:
    """Δθ = scale · num / den + decay · θ (den None means 1), element-wise, per tensor.

    `num` and `den` may be the optimizer's own state tensors: the engine only reads them.
    `scale` is one float for the batch or one float per tensor (bias corrections differ when a
    parameter skipped steps). `decay` is AdamW's decoupled λ when a rule keeps it (eq. 16).
    """

    num: list[Tensor]
    den: list[Tensor] | None = None
    scale: float | list[float] = 1.0
    decay: float = 0.0


DeltaFn = Callable[[Batch], Delta]


@dataclass(frozen=True)
class Rule:
    """Δθ(t+1) of Table I for one optimizer class.

    `delta` states the math once over lists of tensors (torch._foreach_* style).
    `needs_grad(group)` says whether the rule reads the last gradient, which torch's state does not
    keep (RMSprop, SGD without momentum, Adagrad, NAdam): the runtime then caches it in a step
    pre-hook, while prediction is on.
    """

    delta: DeltaFn
    needs_grad: Callable[[dict[str, Any]], bool] = lambda group: False
    name: str = ""
    # The class's `weight_decay` is decoupled (Adafactor, Muon, Lion): no λ·θ in the cached g_t.
    decoupled_decay: bool = False


def steps(states: Sequence[dict[str, Any]]) -> list[float]:
    """The `step` of each state as a float (torch keeps it as a 0-dim tensor).

    Steps on an accelerator (fused/capturable optimizers) are read with one transfer, not one
    synchronisation per tensor.
    """
    values = [st["step"] for st in states]
    if values and isinstance(values[0], Tensor) and values[0].device.type != "cpu":
        return torch.stack([v.reshape(()).float() for v in values]).tolist()
    return [float(v) for v in values]


def adam_delta(
    m: list[Tensor], v: list[Tensor], beta1: float, beta2: float, eps: float, t: list[float]
) -> Delta:
    """m̂/(√v̂ + ε) (Table I) with one new tensor: √bc2/bc1 · m / (√v + ε·√bc2)."""
    den = torch._foreach_sqrt(v)
    root_bc2 = [(1 - beta2**k) ** 0.5 for k in t]
    torch._foreach_add_(den, [eps * r for r in root_bc2])
    scale = [r / (1 - beta1**k) for r, k in zip(root_bc2, t, strict=True)]
    return Delta(num=m, den=den, scale=scale)


def scalar(x: float | Tensor) -> float:
    """A hyperparameter (float or 1-element tensor) as a Python float."""
    return float(x)


def importable_classes(module: str, names: Sequence[str]) -> list[type]:
    """The classes `module.<name>` that import; none when the module fails to import.

    For the entries of optimizers outside torch: a missing or broken optional install must not
    break `predict` for anything else.
    """
    try:
        mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken optional install must not break predict
        return []
    return [c for c in (getattr(mod, n, None) for n in names) if isinstance(c, type)]
