"""An independent plain-tensor reference for XGrad's Δθ (Table I) and the project's optimizers.

Written from the paper's Table I / eqs. 21 and 25 and torch.optim's documented update equations,
one parameter at a time in float64; it never imports xgrad_rewrite.runtime. `delta` reads a torch
optimizer's per-parameter state; the test supplies the last raw gradient and the weights the last
step was taken from, which torch does not keep.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def last_gradient(grad: Tensor, theta_prev: Tensor, group: dict[str, Any]) -> Tensor:
    """g_t as the step used it: negated for maximize, plus L2 decay λ·θ_{t−1} unless decoupled."""
    g = grad.double()
    if group.get("maximize", False):
        g = -g
    wd = group.get("weight_decay", 0.0)
    if wd and not group.get("decoupled_weight_decay", False):
        g = g + wd * theta_prev.double()
    return g


def delta(
    name: str,
    state: dict[str, Any],
    group: dict[str, Any],
    theta: Tensor,
    g_last: Tensor | None = None,
    keep_decay: bool = False,
) -> Tensor:
    """Δθ(t+1) for one parameter from the optimizer's stored state (float64)."""
    st = {k: v.double() if isinstance(v, Tensor) else v for k, v in state.items()}
    t = float(state["step"]) if "step" in state else 0.0
    eps = group.get("eps", 0.0)
    betas = group.get("betas", (0.0, 0.0))
    b1, b2 = float(betas[0]), float(betas[1])
    if name == "SGD":
        if group["momentum"] != 0:
            return st["momentum_buffer"]  # Table I: v_t, also with nesterov (the paper's choice)
        return g_last
    if name == "RMSprop":
        if group["momentum"] > 0:
            return st["momentum_buffer"]
        v = st["square_avg"]
        if group["centered"]:
            v = v - st["grad_avg"] ** 2
        return g_last / (v.sqrt() + eps)
    if name in ("Adam", "AdamW", "AdaBelief"):
        key = {"AdaBelief": "exp_avg_var"}.get(name, "exp_avg_sq")
        if group.get("amsgrad", False):
            key = "max_exp_avg_sq"
        m_hat = st["exp_avg"] / (1 - b1**t)
        v_hat = st[key] / (1 - b2**t)
        d = m_hat / (v_hat.sqrt() + eps)
    elif name == "AdaM3":
        d = (st["exp_avg"] / (1 - b1**t)) / (st["exp_avg_sq"] / (1 - b2**t)).sqrt()
    elif name == "Adamax":
        return st["exp_avg"] / (1 - b1**t) / st["exp_inf"]
    elif name == "Adagrad":
        lr_factor = 1 / (1 + t * group["lr_decay"])  # the next step's decayed rate
        return lr_factor * g_last / (st["sum"].sqrt() + eps)
    elif name == "RAdam":
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / bc2
        m_hat = st["exp_avg"] / bc1
        if rho > 5:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            d = m_hat * r * math.sqrt(bc2) / (st["exp_avg_sq"].sqrt() + eps)
        else:
            d = m_hat
    elif name == "NAdam":
        psi = group["momentum_decay"]
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = float(state["mu_product"])
        den = (st["exp_avg_sq"] / (1 - b2**t)).sqrt() + eps
        d = ((1 - mu) / (1 - prod) * g_last + mu_next / (1 - prod * mu_next) * st["exp_avg"]) / den
    else:
        raise KeyError(name)
    if keep_decay and group.get("decoupled_weight_decay", False):
        d = d + group["weight_decay"] * theta.double()
    return d


def predicted(theta: Tensor, d: Tensor, lr: float, s: float) -> Tensor:
    """Eq. 31: θ̂ = θt − γ·s·Δθ."""
    return theta.double() - lr * s * d


def moment_step(name: str, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict) -> None:
    """One AdaBelief (eq. 21) or AdaM3 (eq. 25) step on a float64 copy, written into p."""
    b1, b2 = group["betas"]
    lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
    theta = p.double()
    g = grad.double()
    if group["maximize"]:
        g = -g
    if wd and group["decoupled_weight_decay"]:
        theta = theta * (1 - lr * wd)
    elif wd:
        g = g + wd * p.double()
    if not state:
        state.update(step=0, m=torch.zeros_like(theta), v=torch.zeros_like(theta))
    state["step"] += 1
    t = state["step"]
    state["m"] = b1 * state["m"] + (1 - b1) * g
    if name == "AdaBelief":
        state["v"] = b2 * state["v"] + (1 - b2) * (g - state["m"]) ** 2 + eps
        update = (state["m"] / (1 - b1**t)) / ((state["v"] / (1 - b2**t)).sqrt() + eps)
    else:
        state["v"] = b2 * state["v"] + (1 - b2) * state["m"] ** 2 + eps
        update = (state["m"] / (1 - b1**t)) / (state["v"] / (1 - b2**t)).sqrt()
    p.copy_(theta - lr * update)
