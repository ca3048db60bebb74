"""Table I rules, one module per optimizer family, registered here for their torch classes.

The rule interface (what a new module, e.g. for Adadelta, Rprop or a third-party optimizer, adds):

- A `Rule(delta, needs_grad=..., name=...)` (see `base.py`). `delta(batch: Batch) -> Delta` states
  Δθ(t+1) once, over lists of tensors, with `torch._foreach_*` ops; no loop over parameters except
  to read per-tensor scalars such as `step`.
- `Batch`: `params`, `states` (their `optimizer.state` dicts, read-only), `group` (the param group's
  options), `grads` (the last gradient the step used, when `needs_grad(group)` is true) and
  `theta` (θt, for terms that multiply the weights). All tensors in a batch share device and dtype.
- `Delta(num, den=None, scale=1.0, decay=0.0)` means Δθ = scale·num/den + decay·θt. The engine
  never writes into `num`/`den` (they may be state tensors); a rule may return new tensors.
  The engine turns it into θ̂ = θt − lr·s·Δθ with one `_foreach_addcdiv_` (or `_foreach_add_`)
  after stashing θt, or into plain Δθ tensors for `directions()`.
- Register with `xgrad_rewrite.runtime.register(OptimizerClass, rule)`; lookup walks the MRO,
  so a subclass inherits its base's rule. A plain `delta` function is accepted too.

The engine's two steps (`engine.compute` → Delta, `engine.apply` → stash + in-place write) are
separate so a fused or compiled back end can reuse the rules and replace only `apply`.
"""

from __future__ import annotations

import torch

from xgrad_rewrite.optim import AdaBelief, AdaM3
from xgrad_rewrite.runtime.registry import register
from xgrad_rewrite.runtime.rules import (
    adabelief,
    adadelta,
    adafactor,
    adagrad,
    adam,
    asgd,
    muon,
    rmsprop,
    rprop,
    sgd,
    sparse_adam,
)
from xgrad_rewrite.runtime.rules.adabelief import adabelief_rule, adam3_rule
from xgrad_rewrite.runtime.rules.adam import adam_rule, adamw_rule, nadam_rule, radam_rule
from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule

__all__ = [
    "Batch",
    "Delta",
    "Rule",
    "adabelief_rule",
    "adam3_rule",
    "adam_rule",
    "adamw_rule",
    "nadam_rule",
    "radam_rule",
    "register_builtin",
]


def register_builtin() -> None:
    """(Re-)register the built-in rules (tests call it to undo their own `register` calls)."""
    register(torch.optim.SGD, sgd.RULE)
    register(torch.optim.RMSprop, rmsprop.RULE)
    register(torch.optim.Adam, adam.ADAM)  # AdamW inherits it (drops the decay, eq. 20)
    register(torch.optim.AdamW, adam.ADAM)
    register(torch.optim.Adamax, adam.ADAMAX)
    register(torch.optim.NAdam, adam.NADAM)
    register(torch.optim.RAdam, adam.RADAM)
    register(torch.optim.Adagrad, adagrad.RULE)
    register(AdaBelief, adabelief.ADABELIEF)
    register(AdaM3, adabelief.ADAM3)
    register(torch.optim.Adadelta, adadelta.RULE)
    register(torch.optim.ASGD, asgd.RULE)
    register(torch.optim.Rprop, rprop.RULE)
    register(torch.optim.SparseAdam, sparse_adam.RULE)
    for name, rule in (("Adafactor", adafactor.RULE), ("Muon", muon.RULE)):  # newer torch only
        if hasattr(torch.optim, name):
            register(getattr(torch.optim, name), rule)


register_builtin()
