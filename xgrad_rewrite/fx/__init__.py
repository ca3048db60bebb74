"""FX path: weight prediction built into a traced model's graph (README.md, "FX mode").

    import xgrad_rewrite.runtime as xgrad
    model = xgrad.fx.predictive(model, optimizer, s=2)   # once, after both exist
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()                    # forward reads θ̂ = θ − c·d
        optimizer.step()                                   # then d is refreshed

`predictive` traces the model with torch.fx so that every read of a parameter the optimizer
updates becomes `p − c·d` (eq. 31): `d` is Δθ(t+1) of Table I, computed by the runtime's own rules
(`xgrad_rewrite.runtime.directions`) in an optimizer step post-hook, and `c = lr·s` (a 0-dim
tensor per param group, read from the group's `lr` at each training forward, so LR schedulers
act as in the eager path). The weights are never written: gradients land on the real
parameters, nothing is stashed or restored, an exception in the forward leaves nothing to clean
up, and the traced forward composes with `torch.compile`.

It reads the runtime only through `xgrad_rewrite.runtime.internal` (never the runtime package
itself, which imports this one on first use of `xgrad.fx`).

The model object itself is returned, with its `forward` replaced by a `PredictiveForward`:
training-mode forwards with gradients enabled run the traced graph; `model.eval()` and
`torch.no_grad()` forwards run the model's own forward on θt. `state_dict()`, `.to()`,
`.train()/.eval()`, hooks on the model and its other methods are unchanged.
"""

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.fx")

from xgrad_rewrite.fx.predictive import (  # noqa: E402
    PredictiveForward,
    predictive,
    remove,
)
from xgrad_rewrite.fx.trace import UntraceableModelError  # noqa: E402

__all__ = ["PredictiveForward", "UntraceableModelError", "predictive", "remove"]
