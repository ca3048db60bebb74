"""The Lightning callback's hooks, shared by ``lightning`` and ``pytorch_lightning`` (two packages
with two ``Callback`` base classes; each public module mixes these hooks into its own base).

Where the forward runs decides where θ̂ must be loaded:

- Automatic optimization calls ``optimizer.step(closure)``; the closure runs forward and backward
  *inside* the step, after the step pre-hooks (the runtime's restores θt there). A step pre-hook
  registered ahead of the runtime's therefore runs the closure on θ̂ itself and hands the step a
  closure that returns the result; the runtime's hook then restores and sees fresh gradients.
- Gradient accumulation micro-batches, manual optimization and the fp16 ``GradScaler`` path call
  the forward outside ``step``: ``on_train_batch_start`` has loaded θ̂ for them.
- ``on_before_optimizer_step`` (after backward, before the update or a scaler's skip) and
  ``on_train_batch_end`` restore, so validation and checkpoints always see θt.
"""

from __future__ import annotations

from typing import Any

import torch

import xgrad_rewrite.runtime as xgrad
from xgrad_rewrite.runtime.internal import unwrap  # LightningOptimizer wraps the real one


class XGradLightningHooks:
    """Train with XGrad-S``s``: forward and backward on θ̂ = θt − lr·s·Δθ (eq. 31)."""

    def __init__(self, s: float = 1) -> None:
        super().__init__()
        self.s = s
        self._handles: list[Any] = []

    def _optimizers(self, trainer: Any) -> list[torch.optim.Optimizer]:
        return [unwrap(o) for o in trainer.optimizers]

    def _run_closure_on_prediction(
        self, optimizer: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        positional = "closure" not in kwargs and len(args) > 1
        closure = args[1] if positional else kwargs.get("closure")
        if closure is None:
            return None
        with xgrad.predicted(optimizer, self.s), torch.enable_grad():
            result = closure()

        def done() -> Any:
            return result

        if positional:
            return (args[0], done, *args[2:]), kwargs
        return args, {**kwargs, "closure": done}

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        for optimizer in self._optimizers(trainer):
            handle = optimizer.register_step_pre_hook(self._run_closure_on_prediction)
            # Ahead of the runtime's restore hook, whenever that one was registered, so the
            # runtime caches g_t from the closure's backward (RMSprop, plain SGD need it).
            hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
            if hooks is not None and handle.id in hooks:
                hooks.move_to_end(handle.id, last=False)
            self._handles.append(handle)
            # Registers the runtime's hook, and fails now for an optimizer without a rule.
            xgrad.predict(optimizer, self.s)
            xgrad.restore(optimizer)

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        for optimizer in self._optimizers(trainer):
            xgrad.predict(optimizer, self.s)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        xgrad.restore(optimizer)

    def _restore_all(self, trainer: Any) -> None:
        for optimizer in self._optimizers(trainer):
            xgrad.restore(optimizer)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._restore_all(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore_all(trainer)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore_all(trainer)
