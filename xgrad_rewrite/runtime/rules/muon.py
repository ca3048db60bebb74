"""Muon (torch 2.13's `torch.optim.Muon`): Δθ = r(A, B) · NS(ũ_t), the update step t applied.

torch's step (torch/optim/_muon.py): B_t = lerp(B_{t−1}, g_t, 1 − μ) (`momentum_buffer`);
ũ_t = lerp(g_t, B_t, μ) with nesterov (the default), else B_t; O_t = NS(ũ_t), the quintic
Newton-Schulz orthogonalisation in bfloat16; θ ← (1 − lr·λ)·θ − lr·r·O_t with the learning-rate
adjustment r = √max(1, A/B) ("original", the default) or 0.2·√max(A, B) ("match_rms_adamw").
Δθ = r·O_t recomputed from B_t (and the cached g_t under nesterov) is exactly the update step t
applied, as Table I's SGD uses v_t. torch's Muon accepts 2D parameters only (its constructor
refuses others and has no fallback); the rule does the same, so a parameter of another shape
gets a clear error rather than a guess. Decoupled weight decay is dropped by default (eq. 20)
and kept exactly with `muon_rule(keep_decay=True)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule


def newton_schulz(u: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float):
    """torch 2.13's `_zeropower_via_newtonschulz`, op for op (bfloat16, wide orientation)."""
    a, b, c = coefficients
    x = u.bfloat16()
    tall = u.size(0) > u.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def lr_ratio(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """Muon's learning-rate adjustment r for an A×B matrix."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def muon_rule(*, keep_decay: bool = False) -> Rule:
    """torch Muon's rule; `keep_decay=True` keeps its decoupled weight decay in Δθ."""

    def delta(batch: Batch) -> Delta:
        group = batch.group
        mu, nesterov = group["momentum"], group["nesterov"]
        grads = batch.grads if nesterov else [None] * len(batch.params)
        assert grads is not None
        num, scale = [], []
        for p, st, g in zip(batch.params, batch.states, grads, strict=True):
            if p.ndim != 2:
                raise ValueError(
                    "xgrad: torch.optim.Muon only updates 2D parameters, got shape "
                    f"{tuple(p.shape)}"
                )
            buf = st["momentum_buffer"]
            u = g.lerp(buf, mu) if nesterov else buf
            o = newton_schulz(u, group["ns_coefficients"], group["ns_steps"], group["eps"])
            num.append(o.to(p.dtype))
            scale.append(lr_ratio(group["adjust_lr_fn"], p.shape))
        decay = float(group["weight_decay"]) if keep_decay else 0.0
        return Delta(num=num, scale=scale, decay=decay)

    return Rule(
        delta=delta,
        needs_grad=lambda group: bool(group["nesterov"]),
        name="Muon",
        decoupled_decay=True,
    )


RULE = muon_rule()
