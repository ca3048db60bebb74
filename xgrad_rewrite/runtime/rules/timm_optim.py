"""Rules for timm.optim's NAdamW, LaProp, Adan, Lamb and AdamP (timm 1.0; Lion is in thirdparty).

Each Δθ is the update step t applied, recomputed from the state after step t and, where the
formula has a gradient term (NAdamW's Nesterov term, AdamP's projection, any `caution` mask),
the cached g_t; their decoupled weight decays are dropped as for AdamW (eq. 20). Exact unless
noted: Lamb's trust ratio and L2 term and AdamP's projection use θt where step t used θ_{t−1}.
`entries()` gives their (class, rule) pairs; the registry reads them through
`thirdparty.entries("timm")` on first sight of a timm optimizer, so nothing imports timm before
then (AdamP's rule also reads timm's own `projection` from `timm.optim.adamp`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules.base import (
    Batch,
    Delta,
    Rule,
    importable_classes,
    scalar,
    steps,
)


def _caution_(updates: list[Tensor], grads: list[Tensor]) -> None:
    """timm's `caution`: keep where update and gradient agree, rescaled by the kept fraction."""
    for u, g in zip(updates, grads, strict=True):
        mask = (u * g > 0).to(g.dtype)
        u.mul_(mask.div_(mask.mean().clamp_(min=1e-3)))


def _caution(group: dict[str, Any]) -> bool:
    return bool(group.get("caution", False))


def _group_step(group: dict[str, Any]) -> float:
    return float(group["step"])


def nadamw_delta(batch: Batch) -> Delta:
    """lerp(m_t, g_t, 1−β1)/bc1 / (√v_t/√bc2 + ε), RMS-clipped denominator when configured."""
    group, states = batch.group, batch.states
    assert batch.grads is not None
    beta1, beta2 = (scalar(b) for b in group["betas"])
    num = torch._foreach_lerp([st["exp_avg"] for st in states], batch.grads, 1 - beta1)
    den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
    t = steps(states)
    torch._foreach_div_(den, [(1 - beta2**k) ** 0.5 for k in t])
    torch._foreach_add_(den, group["eps"])
    threshold = group.get("clipping_threshold")
    if threshold is not None:
        for d, g in zip(den, batch.grads, strict=True):
            rms = g.div(d).norm() / g.numel() ** 0.5
            d.mul_((rms / threshold).clamp_(min=1.0))
    if _caution(group):
        _caution_(num, batch.grads)
    return Delta(num=num, den=den, scale=[1 / (1 - beta1**k) for k in t])


def laprop_delta(batch: Batch) -> Delta:
    """m_t / (EMA of the lr): LaProp's step moves θ by lr/`exp_avg_lr_1` · m_t."""
    states = batch.states
    num = [st["exp_avg"] for st in states]
    if _caution(batch.group):
        assert batch.grads is not None
        num = [m.clone() for m in num]
        _caution_(num, batch.grads)
    scale = [1 / float(st["exp_avg_lr_1"]) if float(st["exp_avg_lr_1"]) else 0.0 for st in states]
    return Delta(num=num, scale=scale)


def adan_delta(batch: Batch) -> Delta:
    """(m_t/bc1 + β2·d_t/bc2) / (√n_t/√bc3 + ε) with the group's step count."""
    group, states = batch.group, batch.states
    beta1, beta2, beta3 = (scalar(b) for b in group["betas"])
    t = _group_step(group)
    m = [st["exp_avg"] for st in states]
    if _caution(group):
        assert batch.grads is not None
        m = [x.clone() for x in m]
        _caution_(m, batch.grads)
    num = torch._foreach_div(m, 1 - beta1**t)
    torch._foreach_add_(num, [st["exp_avg_diff"] for st in states], alpha=beta2 / (1 - beta2**t))
    den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
    torch._foreach_div_(den, (1 - beta3**t) ** 0.5)
    torch._foreach_add_(den, group["eps"])
    return Delta(num=num, den=den)


def lamb_delta(batch: Batch) -> Delta:
    """trust(‖θt‖, ‖u‖)·u, u = m̂/(√v̂+ε) (+ λ·θt for Lamb's L2 decay), group step count."""
    group, states = batch.group, batch.states
    beta1, beta2 = (scalar(b) for b in group["betas"])
    t = _group_step(group)
    bc1, bc2 = (1 - beta1**t, 1 - beta2**t) if group["bias_correction"] else (1.0, 1.0)
    den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
    torch._foreach_div_(den, bc2**0.5)
    torch._foreach_add_(den, group["eps"])
    num = torch._foreach_div([st["exp_avg"] for st in states], den)
    torch._foreach_div_(num, bc1)
    if _caution(group):
        assert batch.grads is not None
        _caution_(num, batch.grads)
    wd = group["weight_decay"]
    if wd and not group.get("decoupled_decay", False):
        torch._foreach_add_(num, batch.theta, alpha=wd)
    if wd or group.get("always_adapt", False):
        for u, theta in zip(num, batch.theta, strict=True):
            w_norm, u_norm = theta.norm(2.0), u.norm(2.0)
            ratio = torch.where(w_norm > 0, torch.where(u_norm > 0, w_norm / u_norm, 1.0), 1.0)
            if group.get("trust_clip", False):
                ratio = ratio.clamp(max=1.0)
            u.mul_(ratio)
    return Delta(num=num)


def adamp_delta(batch: Batch) -> Delta:
    """projection(θt, g_t, m_t/den or its Nesterov form)/bc1, with AdamP's own `projection`."""
    from timm.optim.adamp import projection

    group, states = batch.group, batch.states
    assert batch.grads is not None
    beta1, beta2 = (scalar(b) for b in group["betas"])
    num, scale = [], []
    for theta, st, g, k in zip(batch.theta, states, batch.grads, steps(states), strict=True):
        den = (st["exp_avg_sq"].sqrt() / (1 - beta2**k) ** 0.5).add_(group["eps"])
        m = st["exp_avg"]
        perturb = (beta1 * m + (1 - beta1) * g) / den if group["nesterov"] else m / den
        if theta.dim() > 1:
            perturb, _ = projection(
                theta,
                g,
                perturb,
                group["delta"],
                group["wd_ratio"],
                group["eps"],
                _caution(group),
            )
        elif _caution(group):
            _caution_([perturb], [g])
        num.append(perturb)
        scale.append(1 / (1 - beta1**k))
    return Delta(num=num, scale=scale)


def _rule(delta, name: str, needs_grad=_caution) -> Rule:  # noqa: ANN001
    return Rule(delta=delta, needs_grad=needs_grad, name=name, decoupled_decay=True)


NADAMW = _rule(nadamw_delta, "timm NAdamW", needs_grad=lambda group: True)
LAPROP = _rule(laprop_delta, "timm LaProp")
ADAN = _rule(adan_delta, "timm Adan")
LAMB = _rule(lamb_delta, "timm Lamb")
ADAMP = _rule(adamp_delta, "timm AdamP", needs_grad=lambda group: True)


def entries() -> list[tuple[type, Rule]]:
    """(class, rule) for the timm.optim classes above that import; imports timm.optim."""
    rules = {"NAdamW": NADAMW, "LaProp": LAPROP, "Adan": ADAN, "Lamb": LAMB, "AdamP": ADAMP}
    return [
        (cls, rule)
        for name, rule in rules.items()
        for cls in importable_classes("timm.optim", (name,))
    ]
