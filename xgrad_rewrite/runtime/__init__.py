"""XGrad weight prediction at run time (Algorithm 1): predict / restore around forward+backward.

    import xgrad_rewrite.runtime as xgrad
    optimizer.zero_grad()
    xgrad.predict(optimizer, s=2)   # stash θt, load θ̂ = θt − lr·s·Δθ (eq. 31, Table I)
    loss_fn(model(x), y).backward()  # gradients at θ̂
    xgrad.restore(optimizer)        # θt back, bit for bit
    optimizer.step()

Public API:
- `predict(optimizer, s=1)`: for every parameter with optimizer state, stash θt (outside
  `optimizer.state`, in a WeakKeyDictionary keyed by the optimizer, so `state_dict()` never sees
  it) and write θ̂ = θt − lr·s·Δθ in place (lr of its group, float or tensor; never rebinding
  `p.data`; never reading `p.grad`). Idempotent while predicted. s=0 is off.
- `restore(optimizer)`: stashed θt back (bit-exact), stash dropped; no-op when not predicted.
- `predicted(optimizer, s=1)`: context manager, restores on exit, also on error.
- `is_predicted(optimizer)`: whether θ̂ is loaded.
- `directions(optimizer)`: [(param, Δθ as a new tensor, group lr)] for every parameter with state,
  so θ̂ = θ − lr·s·Δθ; mutates nothing (the FX path uses it, so the formulas exist once).
- `register(cls, rule)`: a rule for an optimizer class (looked up along the MRO); see
  `xgrad_rewrite.runtime.rules` for the interface, `adamw_rule(keep_decay=True)` to keep AdamW's
  decoupled decay exactly.
- `install_gradscaler_restore()` / `uninstall_gradscaler_restore()`: the one process-wide patch
  (restore first in `torch.amp.GradScaler.step`), see below.

The first `predict` registers a step pre-hook on the optimizer that restores before any step and,
while prediction is on, caches the last gradient g_t for rules whose state lacks it (RMSprop and
SGD without momentum, Adagrad, NAdam). A step that `torch.amp.GradScaler` skips (inf/nan
gradients) never calls `optimizer.step()`, so that hook cannot restore; the first `predict` in
the process therefore also calls `install_gradscaler_restore()`, which patches
`torch.amp.GradScaler.step` to `restore(optimizer)` first: a skipped step leaves θt. Importing
this package patches nothing; `uninstall_gradscaler_restore()` puts torch's method back and
keeps later `predict` calls from patching it again.

Wrappers with an `.optimizer` that is a torch optimizer (accelerate, Lightning) are unwrapped.
LBFGS and classes without a rule get a TypeError.
Environment, read at each `predict`: `XGRAD_S` (float, replaces s), `XGRAD_DISABLE=1` (off).
`XGRAD_VERIFY=1`, read at import: watch the run and report where the patch is wrong (`verify`).
"""

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.runtime")

from xgrad_rewrite.runtime.api import (  # noqa: E402
    directions,
    install_gradscaler_restore,
    is_predicted,
    predict,
    predicted,
    restore,
    uninstall_gradscaler_restore,
)
from xgrad_rewrite.runtime.registry import register  # noqa: E402
from xgrad_rewrite.runtime.rules import adam_rule, adamw_rule  # noqa: E402

__all__ = [
    "adam_rule",
    "adamw_rule",
    "directions",
    "install_gradscaler_restore",
    "is_predicted",
    "predict",
    "predicted",
    "register",
    "restore",
    "uninstall_gradscaler_restore",
]


def __getattr__(name: str) -> object:
    """`xgrad.fx` (the FX path, `--mode fx`), imported on first use: it needs torch.fx."""
    if name == "fx":
        import importlib

        return importlib.import_module("xgrad_rewrite.fx")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
