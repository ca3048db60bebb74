"""predict / restore / predicted / directions: Algorithm 1's steps 1-3 and 6 on an optimizer."""

from __future__ import annotations

import contextlib
import math
import os
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime import engine, fused, verify
from xgrad_rewrite.runtime.registry import rule_for, unwrap

_RECORDS: weakref.WeakKeyDictionary[torch.optim.Optimizer, engine.Record] = (
    weakref.WeakKeyDictionary()
)


def _record(optimizer: torch.optim.Optimizer) -> engine.Record:
    record = _RECORDS.get(optimizer)
    if record is None:
        record = _RECORDS[optimizer] = engine.Record()
    return record


def effective_s(s: float) -> float:
    """s after the env overrides, read on every call: XGRAD_DISABLE=1 is off, XGRAD_S replaces s."""
    if os.environ.get("XGRAD_DISABLE", "").strip() not in ("", "0"):
        return 0.0
    override = os.environ.get("XGRAD_S", "").strip()
    if override:
        try:
            s = float(override)
        except ValueError:
            raise ValueError(f"XGRAD_S must be a number, got {override!r}") from None
    s = float(s)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"xgrad: s must be a finite number >= 0, got {s!r}")
    return s


@torch.no_grad()
def _pre_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Step pre-hook: restore θt before any step, then cache g_t for rules that need it.

    It finds its record through the optimizer it is called with, so a deep-copied optimizer
    (which shares this function object) acts on its own parameters.
    """
    record = _RECORDS.get(optimizer)
    if record is None:
        return
    engine.restore(record)
    if record.active:
        engine.cache_grads(optimizer, rule_for(optimizer), record)
    else:
        record.grads.clear()


def _install_hook(optimizer: torch.optim.Optimizer, record: engine.Record) -> None:
    if record.hook is not None:
        return
    if _SCALER_AUTO:
        install_gradscaler_restore()
    hooks = getattr(optimizer, "_optimizer_step_pre_hooks", {})
    if any(hook is _pre_step for hook in hooks.values()):  # e.g. copied by deepcopy
        record.hook = True
        return
    record.hook = optimizer.register_step_pre_hook(_pre_step)


# GradScaler.step restores first: installed by the first predict, removable (see below).
_SCALER_STEP: tuple[Any, Any] | None = None  # (torch's step, ours) while installed
_SCALER_AUTO = True  # whether predict installs it; uninstall_gradscaler_restore() clears it


def _gradscaler_class() -> Any:
    return getattr(getattr(torch, "amp", None), "GradScaler", None)


def install_gradscaler_restore() -> None:
    """Make `torch.amp.GradScaler.step(optimizer)` call `restore(optimizer)` before it steps.

    The guarantee: a step the scaler skips (inf/nan gradients) leaves θt in the model. Such a step
    never calls `optimizer.step()`, so the step pre-hook that restores never runs; without this a
    wrapper doing backward and step together (MAE's `loss_scaler`) would leave θ̂ in the model.
    Restoring is a no-op when nothing is predicted. It patches the class for the whole process
    (`torch.cuda.amp.GradScaler` inherits it); the first `predict` (or `directions`) calls this,
    importing the runtime does not. Idempotent; a no-op without `torch.amp.GradScaler`.
    `uninstall_gradscaler_restore()` puts torch's own method back.
    """
    global _SCALER_STEP, _SCALER_AUTO
    _SCALER_AUTO = True
    scaler_cls = _gradscaler_class()
    if _SCALER_STEP is not None or scaler_cls is None:
        return
    original = scaler_cls.step

    def step(self: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        restore(optimizer)
        return original(self, optimizer, *args, **kwargs)

    step.__wrapped__ = original  # type: ignore[attr-defined]
    step.__doc__ = original.__doc__
    scaler_cls.step = step
    _SCALER_STEP = (original, step)


def uninstall_gradscaler_restore() -> None:
    """Put torch's own `GradScaler.step` back; later `predict` calls do not install it again.

    Without it, restore before `scaler.step` yourself (as the codemod writes it): a skipped step
    otherwise leaves θ̂ in the model until the next `restore`. `install_gradscaler_restore()`
    turns it back on. Raises RuntimeError, changing nothing, when something else patched
    `GradScaler.step` after xgrad (removing ours would drop theirs).
    """
    global _SCALER_STEP, _SCALER_AUTO
    if _SCALER_STEP is not None:
        original, step = _SCALER_STEP
        scaler_cls = _gradscaler_class()
        if scaler_cls.__dict__.get("step") is not step:
            raise RuntimeError(
                "xgrad: torch.amp.GradScaler.step was patched again after xgrad's restore-first "
                "patch; remove that patch first."
            )
        scaler_cls.step = original
        _SCALER_STEP = None
    _SCALER_AUTO = False


@torch.no_grad()
def predict(optimizer: Any, s: float = 1.0) -> None:
    """Stash θt and load θ̂ = θt − lr·s·Δθ (eq. 31) into every parameter with optimizer state.

    Idempotent while predicted; s=0 (or XGRAD_DISABLE=1) does nothing. Never reads `p.grad`.
    `None` (a script whose optimizer is optional: `optimizer = None` unless configured, and
    `if optimizer is not None: optimizer.step()`) does nothing too: there is no step to predict.
    """
    if optimizer is None:
        return
    opt = unwrap(optimizer)
    rule = rule_for(opt)
    record = _record(opt)
    _install_hook(opt, record)
    verify.watch(opt, True)  # XGRAD_VERIFY: a predict counts, also when s=0 makes it a no-op
    if record.predicted:
        return
    s = effective_s(s)
    record.active = s > 0
    if not record.active:  # off: hold no memory for it
        record.grads.clear()
        record.buffers.clear()
        return
    compute_rule, apply = fused.backend(rule)  # XGRAD_IMPL: foreach, fused or auto
    record.stash = []
    try:
        for batch, delta, lr in engine.compute(opt, compute_rule, record):
            apply(batch, delta, float(lr) * s, record)
    except BaseException:  # a rule that fails half-way leaves no parameter predicted
        engine.restore(record)
        raise


@torch.no_grad()
def restore(optimizer: Any) -> None:
    """Write the stashed θt back bit for bit and drop the stash; a no-op when not predicted
    (and for `None`, as in `predict`)."""
    if optimizer is None:
        return
    verify.watch(optimizer, False)
    record = _RECORDS.get(unwrap(optimizer))
    if record is not None:
        engine.restore(record)


def is_predicted(optimizer: Any) -> bool:
    """Whether the optimizer's parameters currently hold predicted weights θ̂."""
    record = _RECORDS.get(unwrap(optimizer))
    return record is not None and record.predicted


@contextlib.contextmanager
def predicted(optimizer: Any, s: float = 1.0) -> Iterator[None]:
    """Predict on enter, restore on exit (also when the body raises)."""
    predict(optimizer, s)
    try:
        yield
    finally:
        restore(optimizer)


@torch.no_grad()
def directions(optimizer: Any) -> list[tuple[Tensor, Tensor, float | Tensor]]:
    """(param, Δθ as a new tensor, group lr) for every parameter with state: θ̂ = θ − lr·s·Δθ.

    Mutates nothing (the FX path builds its prediction buffers from this). Parameters whose rule
    needs the last gradient have a Δθ only once a step was taken after the first `predict`.
    """
    opt = unwrap(optimizer)
    rule = rule_for(opt)
    record = _record(opt)
    if record.hook is None:  # from now on, steps cache g_t for rules that need it
        record.active = True
        _install_hook(opt, record)
    out: list[tuple[Tensor, Tensor, float | Tensor]] = []
    for batch, delta, lr in engine.compute(opt, rule, record):
        for p, d in zip(batch.params, engine.materialize(batch, delta), strict=True):
            out.append((p, d, lr))
    return out
