"""Optimizers the paper uses that torch.optim does not ship: AdaBelief (eq. 21), AdaM3 (eq. 25).

Both follow torch.optim's layout: a single-tensor path (readable reference) and a multi-tensor
`foreach` path of the same math, chosen by the `foreach` flag (None: torch's default for the
params' device), bias-corrected moments, L2 weight decay by default or decoupled (AdamW-style)
with `decoupled_weight_decay=True`, and `maximize`.

State per parameter:
- AdaBelief: 'step' (0-dim float tensor), 'exp_avg' (m_t), 'exp_avg_var' (s_t, ε included).
- AdaM3: 'step', 'exp_avg' (m_t), 'exp_avg_sq' (v_t, EMA of m_t², ε included).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.optim")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.optim.optimizer import _default_to_fused_or_foreach  # noqa: E402

__all__ = ["AdaBelief", "AdaM3"]


class _MomentOptimizer(torch.optim.Optimizer):
    """Shared init/state/dispatch; subclasses give the second-moment key and the two paths."""

    second_key = ""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= float(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def _init_group(self, group: dict[str, Any]) -> tuple[list[Tensor], ...]:
        params, grads, exp_avgs, seconds, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state[self.second_key] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            seconds.append(state[self.second_key])
            steps.append(state["step"])
        return params, grads, exp_avgs, seconds, steps

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, seconds, steps = self._init_group(group)
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                _, foreach = _default_to_fused_or_foreach(params, differentiable=False)
            impl = self._multi_tensor if foreach else self._single_tensor
            impl(params, grads, exp_avgs, seconds, steps, group)
        return loss

    @staticmethod
    def _prepare(
        params: list[Tensor], grads: list[Tensor], group: dict[str, Any]
    ) -> tuple[list[Tensor], float]:
        """g with maximize and weight decay applied (decoupled decay scales θ instead)."""
        lr = float(group["lr"])
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        wd = group["weight_decay"]
        if wd:
            if group["decoupled_weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * wd)
            else:
                grads = torch._foreach_add(grads, params, alpha=wd)
        return grads, lr

    @staticmethod
    def _prepare_one(p: Tensor, g: Tensor, group: dict[str, Any], lr: float) -> Tensor:
        """`_prepare` for one tensor (the single-tensor reference path)."""
        g = -g if group["maximize"] else g
        if group["weight_decay"]:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * group["weight_decay"])
            else:
                g = g.add(p, alpha=group["weight_decay"])
        return g

    def _grouped(self, *lists: list[Tensor]) -> Iterable[tuple[list[Tensor], ...]]:
        grouped = self._group_tensors_by_device_and_dtype(list(lists))  # type: ignore[arg-type]
        for tensors, _ in grouped.values():
            yield tuple(tensors)

    def _single_tensor(self, *args: Any) -> None:
        raise NotImplementedError

    def _multi_tensor(self, *args: Any) -> None:
        raise NotImplementedError


class AdaBelief(_MomentOptimizer):
    """AdaBelief (Zhuang et al. 2020; XGrad eq. 21): Adam with s_t = EMA of (g − m_t)² + ε.

    m_t = β1·m + (1−β1)·g;  s_t = β2·s + (1−β2)·(g − m_t)² + ε;
    θ ← θ − γ·m̂_t/(√ŝ_t + ε), m̂ = m/(1−β1^t), ŝ = s/(1−β2^t). Defaults: eps=1e-16 as the
    authors' `adabelief-pytorch` package.
    """

    second_key = "exp_avg_var"

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-16, weight_decay: float = 0.0, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(params, lr, betas, eps, weight_decay, **kwargs)

    def _single_tensor(self, params, grads, exp_avgs, exp_avg_vars, steps, group) -> None:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        lr = float(group["lr"])
        for p, g, m, s, step in zip(params, grads, exp_avgs, exp_avg_vars, steps, strict=True):
            g = self._prepare_one(p, g, group, lr)
            step += 1
            t = float(step)
            m.lerp_(g, 1 - beta1)
            residual = g - m
            s.mul_(beta2).addcmul_(residual, residual, value=1 - beta2).add_(eps)
            denom = (s.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))

    def _multi_tensor(self, params, grads, exp_avgs, exp_avg_vars, steps, group) -> None:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        for p, g, m, s, step in self._grouped(params, grads, exp_avgs, exp_avg_vars, steps):
            g, lr = self._prepare(p, g, group)
            torch._foreach_add_(step, 1)
            t = [float(k) for k in step]
            torch._foreach_lerp_(m, g, 1 - beta1)
            residual = torch._foreach_sub(g, m)
            torch._foreach_mul_(s, beta2)
            torch._foreach_addcmul_(s, residual, residual, value=1 - beta2)
            torch._foreach_add_(s, eps)
            del residual
            denom = torch._foreach_sqrt(s)
            torch._foreach_div_(denom, [(1 - beta2**k) ** 0.5 for k in t])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(p, m, denom, [-lr / (1 - beta1**k) for k in t])


class AdaM3(_MomentOptimizer):
    """AdaM3 (Wang et al. 2023; XGrad eq. 25): the second moment tracks the momentum, not g.

    m_t = β1·m + (1−β1)·g;  v_t = β2·v + (1−β2)·m_t² + ε;  θ ← θ − γ·m̂_t/√v̂_t
    (no ε outside the root), m̂ = m/(1−β1^t), v̂ = v/(1−β2^t). With fp16 parameters (and so fp16
    state) the default ε=1e-8 rounds away and a zero m gives 0/0: use ε >= 1e-4 there.
    """

    second_key = "exp_avg_sq"

    def _single_tensor(self, params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        lr = float(group["lr"])
        for p, g, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
            g = self._prepare_one(p, g, group, lr)
            step += 1
            t = float(step)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(m, m, value=1 - beta2).add_(eps)
            denom = v.sqrt() / (1 - beta2**t) ** 0.5
            p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))

    def _multi_tensor(self, params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        for p, g, m, v, step in self._grouped(params, grads, exp_avgs, exp_avg_sqs, steps):
            g, lr = self._prepare(p, g, group)
            torch._foreach_add_(step, 1)
            t = [float(k) for k in step]
            torch._foreach_lerp_(m, g, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, m, m, value=1 - beta2)
            torch._foreach_add_(v, eps)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, [(1 - beta2**k) ** 0.5 for k in t])
            torch._foreach_addcdiv_(p, m, denom, [-lr / (1 - beta1**k) for k in t])
