"""Runtime functions for xgrad's own other layers, not for users: the FX path and the
Lightning callback are their clients.

`xgrad_rewrite.fx` builds its prediction from the runtime's rules and must check its arguments
the way `predict` does; the Lightning callback unwraps `LightningOptimizer`. They import what
they need from here and from no other runtime module, so the runtime's inner modules can move
without touching them, and `xgrad.fx` (which the runtime package imports on first use) never
imports the runtime package back.

- `directions(optimizer)`: the public [(param, Δθ, lr)], the formulas stated once.
- `effective_s(s)`: s after `XGRAD_S` / `XGRAD_DISABLE`, with `predict`'s ValueError.
- `rule_for(optimizer)`: the optimizer's rule, or `predict`'s TypeError for an unsupported one.
- `unwrap(optimizer)`: the torch optimizer inside accelerate/Lightning-style wrappers.

Nothing here is a stable API: names may change with their clients.
"""

from __future__ import annotations

from xgrad_rewrite.runtime.api import directions, effective_s
from xgrad_rewrite.runtime.registry import rule_for, unwrap

__all__ = ["directions", "effective_s", "rule_for", "unwrap"]
