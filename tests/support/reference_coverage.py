"""Independent plain-tensor references for the rules beyond Table I, one parameter at a time.

Written from the update equations in torch 2.13's documentation of Adadelta, ASGD, Rprop,
Adafactor, Muon and SparseAdam, and from the third-party papers / docs (Lion: Chen et al. 2023
Alg. 2; transformers' Adafactor: Shazeer & Stern 2018 as documented there; bitsandbytes' Adam is
Adam on dequantised state), in float64 except Muon's Newton-Schulz, which torch runs in bfloat16.
Each function returns Δθ(t+1) so that θ̂ = θt − lr·s·Δθ (eq. 31); it never imports the runtime.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def last_gradient(grad: Tensor, theta_prev: Tensor, group: dict[str, Any], l2: bool) -> Tensor:
    """g_t as the step used it: negated for maximize, plus λ·θ_{t−1} for an L2 weight decay."""
    g = grad.double()
    if group.get("maximize", False):
        g = -g
    if l2 and group.get("weight_decay", 0.0):
        g = g + group["weight_decay"] * theta_prev.double()
    return g


def _d(x: Any) -> Any:
    return x.double() if isinstance(x, Tensor) else x


def adadelta(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    """lr·√(acc_delta + ε)/√(square_avg + ε)·g (torch's Adadelta, with the stored averages)."""
    eps = group["eps"]
    return torch.sqrt(_d(st["acc_delta"]) + eps) / torch.sqrt(_d(st["square_avg"]) + eps) * g


def asgd(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    """ASGD's next step θ ← θ(1 − λη) − ηg, written as lr·Δθ."""
    eta = float(st["eta"])
    step = eta * (g + group["lambd"] * theta.double())
    return step / float(group["lr"])


def rprop(st: dict, group: dict, theta: Tensor, g: Tensor | None, next_step: bool = True):
    """Rprop's next step if every sign persists: η grows by η₊ (clipped) where prev ≠ 0."""
    eta = _d(st["step_size"])
    prev = _d(st["prev"])
    if next_step:
        lo, hi = group["step_sizes"]
        eta = torch.where(prev != 0, (eta * group["etas"][1]).clamp(lo, hi), eta)
    return torch.sign(prev) * eta / float(group["lr"])


def adafactor(st: dict, group: dict, theta: Tensor, g: Tensor, keep_decay: bool = False):
    """torch Adafactor's next update: α/c · g/√V̂ over lr (torch docs' algorithm)."""
    lr = float(group["lr"])
    eps1, eps2 = group["eps"]
    if eps1 is None:
        eps1 = torch.finfo(theta.dtype).eps
    t = float(st["step"]) + 1
    if "row_var" in st:
        r = _d(st["row_var"]).squeeze(-1)  # (..., rows)
        c = _d(st["col_var"]).squeeze(-2)  # (..., cols)
        v = r.unsqueeze(-1) * c.unsqueeze(-2) / r.mean(-1).clamp(min=eps1)[..., None, None]
    else:
        v = _d(st["variance"])
    u = g / v.clamp(min=eps1 * eps1).sqrt()
    rms = lambda x: x.pow(2).mean().sqrt().item()  # noqa: E731
    clip = max(1.0, rms(u) / group["d"])
    alpha = max(eps2, rms(theta.double())) * min(lr, 1 / math.sqrt(t))
    d = alpha / clip * u / lr
    if keep_decay:
        d = d + group["weight_decay"] * theta.double()
    return d


def newton_schulz(x: Tensor, coefficients, steps: int, eps: float) -> Tensor:
    """Muon's quintic iteration X ← aX + (bA + cA²)X, A = XXᵀ, in bfloat16 as torch runs it."""
    a, b, c = coefficients
    tall = x.shape[0] > x.shape[1]
    y = x.to(torch.bfloat16)
    y = y.T if tall else y
    y = y / max(y.norm().item(), eps)
    for _ in range(steps):
        gram = y @ y.T
        y = a * y + (b * gram + c * gram @ gram) @ y
    return (y.T if tall else y).double()


def muon(st: dict, group: dict, theta: Tensor, g: Tensor | None, keep_decay: bool = False):
    """r(A, B)·NS(ũ), ũ = (1−μ)g + μB with nesterov else B (torch's Muon docs)."""
    mu = group["momentum"]
    buf = _d(st["momentum_buffer"])
    u = (1 - mu) * g + mu * buf if group["nesterov"] else buf
    rows, cols = theta.shape
    fn = group["adjust_lr_fn"]
    ratio = 0.2 * math.sqrt(max(rows, cols)) if fn == "match_rms_adamw" else max(1, rows / cols)
    if fn != "match_rms_adamw":
        ratio = math.sqrt(ratio)
    d = ratio * newton_schulz(u, group["ns_coefficients"], group["ns_steps"], group["eps"])
    if keep_decay:
        d = d + group["weight_decay"] * theta.double()
    return d


def sparse_adam(st: dict, group: dict, theta: Tensor, g: Tensor | None) -> Tensor:
    """SparseAdam's update, lr·√(1−β2^t)/(1−β1^t)·m/(√v + ε), for every row with state."""
    b1, b2 = group["betas"]
    t = float(st["step"])
    m, v = _d(st["exp_avg"]), _d(st["exp_avg_sq"])
    return math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + group["eps"])


def lion(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    """Lion (Alg. 2): sign(β1·m + (1−β1)·g)."""
    b1 = group["betas"][0]
    return torch.sign(b1 * _d(st["exp_avg"]) + (1 - b1) * g)


def hf_adafactor(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    """transformers' Adafactor, next step: factored V̂, RMS clip, relative step, first moment."""
    t = float(st["step"]) + 1
    if "exp_avg_sq_row" in st:
        r, c = _d(st["exp_avg_sq_row"]), _d(st["exp_avg_sq_col"])
        v = r.unsqueeze(-1) * c.unsqueeze(-2) / r.mean(-1)[..., None, None]
    else:
        v = _d(st["exp_avg_sq"])
    u = g / v.sqrt()
    u = u / max(1.0, u.pow(2).mean().sqrt().item() / group["clip_threshold"])
    lr = group["lr"]
    if group["relative_step"]:
        lr = min(1e-6 * t if group["warmup_init"] else 1e-2, 1 / math.sqrt(t))
    if group["scale_parameter"]:
        lr *= max(group["eps"][1], theta.double().pow(2).mean().sqrt().item())
    u = lr * u
    if group["beta1"] is not None:
        u = group["beta1"] * _d(st["exp_avg"]) + (1 - group["beta1"]) * u
    return u if group["lr"] is None else u / group["lr"]


def adam_on(m: Tensor, v: Tensor, group: dict, t: float) -> Tensor:
    """Adam's m̂/(√v̂ + ε) (Table I) on given moments (bitsandbytes: dequantised ones)."""
    b1, b2 = group["betas"][:2]
    return (_d(m) / (1 - b1**t)) / ((_d(v) / (1 - b2**t)).sqrt() + group["eps"])


# --- timm.optim (timm 1.0 docs and the papers: NAdamW = Dozat's Nesterov Adam with decoupled
# decay, LaProp (Ziyin et al. 2020), Adan (Xie et al. 2022), LAMB (You et al. 2019), AdamP
# (Heo et al. 2021)); Δθ is the update step t applied, decoupled decay dropped ---------------


def _cautious(u: Tensor, g: Tensor) -> Tensor:
    mask = (u * g > 0).double()
    return u * mask / mask.mean().clamp(min=1e-3)


def timm_nadamw(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    b1, b2 = group["betas"]
    t = float(st["step"])
    u = b1 * _d(st["exp_avg"]) + (1 - b1) * g
    den = (_d(st["exp_avg_sq"]) / (1 - b2**t)).sqrt() + group["eps"]
    if group.get("clipping_threshold") is not None:
        rms = (g / den).pow(2).mean().sqrt().item()
        den = den * max(1.0, rms / group["clipping_threshold"])
    if group["caution"]:
        u = _cautious(u, g)
    return u / (1 - b1**t) / den


def timm_laprop(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    m = _d(st["exp_avg"])
    if group["caution"]:
        m = _cautious(m, g)
    return m / float(st["exp_avg_lr_1"])


def timm_adan(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    b1, b2, b3 = group["betas"]
    t = float(group["step"])
    m = _d(st["exp_avg"])
    if group["caution"]:
        m = _cautious(m, g)
    den = (_d(st["exp_avg_sq"]) / (1 - b3**t)).sqrt() + group["eps"]
    return (m / (1 - b1**t) + b2 * _d(st["exp_avg_diff"]) / (1 - b2**t)) / den


def timm_lamb(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    b1, b2 = group["betas"]
    t = float(group["step"])
    bc1, bc2 = (1 - b1**t, 1 - b2**t) if group["bias_correction"] else (1.0, 1.0)
    u = (_d(st["exp_avg"]) / bc1) / ((_d(st["exp_avg_sq"]) / bc2).sqrt() + group["eps"])
    if group["caution"]:
        u = _cautious(u, g)
    wd = group["weight_decay"]
    if wd and not group["decoupled_decay"]:
        u = u + wd * theta.double()
    if wd or group["always_adapt"]:
        w_norm, u_norm = theta.double().norm().item(), u.norm().item()
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        u = u * (min(ratio, 1.0) if group["trust_clip"] else ratio)
    return u


def timm_adamp(st: dict, group: dict, theta: Tensor, g: Tensor) -> Tensor:
    """AdamP: Adam's step with its radial component removed where θ looks scale-invariant."""
    b1, b2 = group["betas"]
    t = float(st["step"])
    eps = group["eps"]
    den = (_d(st["exp_avg_sq"]) / (1 - b2**t)).sqrt() + eps
    m = _d(st["exp_avg"])
    perturb = (b1 * m + (1 - b1) * g) / den if group["nesterov"] else m / den
    p = theta.double()
    if p.dim() > 1:
        for rows in (p.shape[0], 1):  # per output channel, then the whole layer
            pv, gv = p.reshape(rows, -1), g.reshape(rows, -1)
            cos = (pv * gv).sum(1).abs() / (
                pv.norm(dim=1).clamp(min=eps) * gv.norm(dim=1).clamp(min=eps)
            )
            if cos.max() < group["delta"] / math.sqrt(pv.shape[1]):
                unit = pv / (pv.norm(dim=1, keepdim=True) + eps)
                qv = perturb.reshape(rows, -1)
                perturb = (qv - unit * (unit * qv).sum(1, keepdim=True)).reshape(p.shape)
                break
    return perturb / (1 - b1**t)
