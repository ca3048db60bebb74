"""Rules for well-known optimizers outside torch, and `entries(package)`, their (class, rule) pairs.

Nothing here imports those packages at import time, nor registers anything: the registry calls
`entries(package)` the first time it looks up a rule for an optimizer whose class comes from one
of `PACKAGES` (so the package is loaded already), and adds the pairs it gets to its table (a
user's own `register` for the same class wins).

- timm.optim's NAdamW, LaProp, Adan, Lamb, AdamP: see `timm_optim.py`.
- Lion (`lion_pytorch.Lion`, its foreach variant, `timm.optim.Lion`): step t+1 moves θ by
  sign(β1·m + (1−β1)·g) (Chen et al. 2023, Alg. 2); with the cached g_t (maximize sign included)
  and m_t (`exp_avg`) this is the next update with g_{t+1} = g_t. timm's `caution` mask
  (update·g > 0, rescaled by its mean) is applied the same way. Decoupled decay dropped (eq. 20).
- `transformers.optimization.Adafactor`: its next update with g_{t+1} = g_t, from the factored
  second moment after step t (`exp_avg_sq_row`/`_col`, or `exp_avg_sq`), RMS clipping, the
  relative step min(1e-2, 1/√(t+1)) (or the warm-up one) times max(ε2, RMS(θt)) when
  `scale_parameter`, and with `beta1` the first moment β1·m_t + (1−β1)·update. With `lr=None`
  (relative step) Δθ is the whole update and the runtime multiplies by s only.
- bitsandbytes Adam/AdamW (8-bit, 32-bit, paged): Adam's m̂/(√v̂+ε) (Table I) from the state,
  dequantised first where it is 8-bit (`state1`/`state2` with their `qmap`/`absmax`, block size
  256 as bitsandbytes' blockwise optimizers use). Its weight decay is decoupled: dropped.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime.rules import timm_optim
from xgrad_rewrite.runtime.rules.base import (
    Batch,
    Delta,
    Rule,
    adam_delta,
    importable_classes,
    scalar,
    steps,
)

# What `rule_for`'s TypeError lists as supported when the package is installed.
SUPPORTED = (
    "lion_pytorch.Lion",
    "timm.optim.{Lion,NAdamW,LaProp,Adan,Lamb,AdamP}",
    "transformers.optimization.Adafactor",
    "bitsandbytes.optim.{Adam,AdamW}{,8bit,32bit} and Paged{Adam,AdamW}{,8bit,32bit}",
)


def lion_delta(batch: Batch) -> Delta:
    group = batch.group
    assert batch.grads is not None
    beta1 = scalar(group["betas"][0])
    m = [st["exp_avg"] for st in batch.states]
    num = torch._foreach_mul(m, beta1)
    torch._foreach_add_(num, batch.grads, alpha=1 - beta1)
    torch._foreach_sign_(num)
    if group.get("caution", False):  # timm: keep the coordinates where update and g agree
        for u, g in zip(num, batch.grads, strict=True):
            mask = (u * g > 0).to(g.dtype)
            u.mul_(mask.div_(mask.mean().clamp_(min=1e-3)))
    return Delta(num=num)


LION = Rule(delta=lion_delta, needs_grad=lambda group: True, name="Lion", decoupled_decay=True)


def _hf_adafactor_delta(batch: Batch) -> Delta:
    group = batch.group
    assert batch.grads is not None
    lr_group = group["lr"]
    num = []
    for theta, st, g in zip(batch.theta, batch.states, batch.grads, strict=True):
        g = g.float()
        t = float(st["step"]) + 1  # the next step
        if "exp_avg_sq_row" in st:
            row, col = st["exp_avg_sq_row"], st["exp_avg_sq_col"]
            r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r, col.unsqueeze(-2).rsqrt()).mul_(g)
        else:
            update = st["exp_avg_sq"].rsqrt().mul_(g)
        rms = update.norm(2) / update.numel() ** 0.5
        update.div_((rms / group["clip_threshold"]).clamp_(min=1.0))
        step_size = lr_group
        if group["relative_step"]:
            min_step = 1e-6 * t if group["warmup_init"] else 1e-2
            step_size = min(min_step, 1.0 / math.sqrt(t))
        if group["scale_parameter"]:
            theta32 = theta.float()
            step_size *= max(group["eps"][1], float(theta32.norm(2) / theta32.numel() ** 0.5))
        update.mul_(step_size)
        if group["beta1"] is not None:
            update = st["exp_avg"].mul(group["beta1"]).add_(update, alpha=1 - group["beta1"])
        num.append(update.to(theta.dtype))
    scale = 1.0 if lr_group is None else (1.0 / lr_group if lr_group else 0.0)
    return Delta(num=num, scale=scale)


HF_ADAFACTOR = Rule(
    delta=_hf_adafactor_delta,
    needs_grad=lambda group: True,
    name="transformers Adafactor",
    decoupled_decay=True,
)

_BNB_BLOCKSIZE = 256


def _bnb_moment(state: dict[str, Any], k: int) -> Tensor:
    """state{k} as float32, dequantised when bitsandbytes keeps it in 8 bits."""
    x = state[f"state{k}"]
    if x.dtype != torch.uint8:
        return x
    from bitsandbytes.functional import dequantize_blockwise

    absmax = state[f"absmax{k}"]
    if absmax.numel() != math.ceil(x.numel() / _BNB_BLOCKSIZE):
        raise TypeError(
            "xgrad: cannot dequantise this bitsandbytes state (block size is not "
            f"{_BNB_BLOCKSIZE}); register your own rule for it."
        )
    return dequantize_blockwise(x, absmax=absmax, code=state[f"qmap{k}"], blocksize=_BNB_BLOCKSIZE)


def _bnb_adam_delta(batch: Batch) -> Delta:
    group, states = batch.group, batch.states
    beta1, beta2 = (scalar(b) for b in group["betas"][:2])
    m = [_bnb_moment(st, 1).to(p.dtype) for st, p in zip(states, batch.params, strict=True)]
    v = [_bnb_moment(st, 2).to(p.dtype) for st, p in zip(states, batch.params, strict=True)]
    return adam_delta(m, v, beta1, beta2, group["eps"], steps(states))


BNB_ADAM = Rule(delta=_bnb_adam_delta, name="bitsandbytes Adam", decoupled_decay=True)


def _bnb_names() -> tuple[str, ...]:
    base = ("Adam", "AdamW")
    return tuple(
        f"{p}{b}{bits}" for p in ("", "Paged") for b in base for bits in ("", "8bit", "32bit")
    )


_TABLE: dict[str, list[tuple[str, tuple[str, ...], Rule]]] = {
    "lion_pytorch": [
        ("lion_pytorch.lion_pytorch", ("Lion",), LION),
        ("lion_pytorch.foreach", ("Lion",), LION),
    ],
    "timm": [("timm.optim", ("Lion",), LION)],  # the others: timm_optim.entries()
    "transformers": [("transformers.optimization", ("Adafactor",), HF_ADAFACTOR)],
    "bitsandbytes": [("bitsandbytes.optim", _bnb_names(), BNB_ADAM)],
}

PACKAGES = frozenset(_TABLE)


def entries(package: str) -> list[tuple[type, Rule]]:
    """(class, rule) for `package`'s optimizer classes that can be imported (imports them)."""
    out = [
        (cls, rule)
        for module, names, rule in _TABLE.get(package, [])
        for cls in importable_classes(module, names)
    ]
    if package == "timm":
        out += timm_optim.entries()
    return out
