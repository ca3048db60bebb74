"""SparseAdam: Δθ = √(1−β2^t)/(1−β1^t) · m_t / (√v_t + ε), per row, for every row with state.

Decision: predict, not refuse. SparseAdam's moments are dense tensors, but a step only updates
(and moves) the rows its sparse gradient touches, with the bias correction of the parameter's
step count t. The rows the next step will touch are the rows the next forward reads (an
`Embedding(sparse=True)` gradient is exactly the looked-up rows), so predicting every row as if
it were touched changes the forward only where the step will act; rows never touched have
m = v = 0 and do not move. For the rows step t touched this is exactly the update step t
applied (note ε is not bias-corrected here, unlike Adam); for older rows it uses their stale
moments with the current t (approximate). Dense parameter, dense state: the engine's foreach
path applies unchanged and no gradient is cached (sparse gradients never are).
"""

from __future__ import annotations

import torch

from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule, scalar, steps


def delta(batch: Batch) -> Delta:
    group, states = batch.group, batch.states
    beta1, beta2 = (scalar(b) for b in group["betas"])
    den = torch._foreach_sqrt([st["exp_avg_sq"] for st in states])
    torch._foreach_add_(den, group["eps"])
    scale = [(1 - beta2**k) ** 0.5 / (1 - beta1**k) for k in steps(states)]
    return Delta(num=[st["exp_avg"] for st in states], den=den, scale=scale)


RULE = Rule(delta=delta, name="SparseAdam")
