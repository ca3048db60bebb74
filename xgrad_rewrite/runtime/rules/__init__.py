"""Table I rules, one module per optimizer family; `table.py` says which torch class uses which.

Rules only define rules: nothing here imports the registry or registers at import. The registry
reads `table.builtin()` for torch's classes and, on first sight of a class from one, asks
`thirdparty.entries(package)` for the optimizers outside torch.

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
- Register with `xgrad_rewrite.runtime.register(OptimizerClass, rule)` (or add a built-in one
  to `table.py`); lookup walks the MRO, so a subclass inherits its base's rule. A plain `delta`
  function is accepted too.

The engine's two steps (`engine.compute` → Delta, `engine.apply` → stash + in-place write) are
separate so a fused or compiled back end can reuse the rules and replace only `apply`.
"""

from __future__ import annotations

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
]
