"""XGrad for ``transformers.Trainer``: predict before each optimizer step's forwards.

    from xgrad_rewrite.integrations.transformers import XGradCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[XGradCallback(s=2)])

``on_step_begin`` fires once per optimizer step, before the first micro-batch's forward (also with
``gradient_accumulation_steps > 1``), so every micro-batch of the step runs forward and backward
on θ̂. θt comes back before the step: the runtime's step pre-hook restores inside
``optimizer.step()``, and ``on_pre_optimizer_step`` restores explicitly as well, because a step
that accelerate's ``GradScaler`` skips (fp16 overflow) never reaches that hook. Logging,
evaluation and checkpoints run after ``on_step_end`` and therefore always see θt. The optimizer
arrives as accelerate's ``AcceleratedOptimizer``; the runtime unwraps it.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

import xgrad_rewrite.runtime as xgrad

__all__ = ["XGradCallback"]


class XGradCallback(TrainerCallback):
    """Train with XGrad-S``s``: forward and backward on θ̂ = θt − lr·s·Δθ (eq. 31)."""

    def __init__(self, s: float = 1) -> None:
        self.s = s

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            # Fails now, not after the first step, for an optimizer without a rule (DeepSpeed's).
            xgrad.predict(optimizer, self.s)
            xgrad.restore(optimizer)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            xgrad.predict(optimizer, self.s)

    def _restore(self, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            xgrad.restore(optimizer)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._restore(**kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._restore(**kwargs)  # older transformers have no on_pre_optimizer_step

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._restore(**kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._restore(**kwargs)
