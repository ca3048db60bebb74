"""`predictive(model, optimizer, s)`: the rewritten graph becomes the model's training forward."""

from __future__ import annotations

import types
import weakref
from typing import Any

import torch
from torch import Tensor, fx, nn

from xgrad_rewrite.fx.graph import ROOT, Read, predict_reads
from xgrad_rewrite.fx.trace import UntraceableModelError, trace
from xgrad_rewrite.runtime.internal import directions, effective_s, rule_for, unwrap


class PredictiveForward:
    """`model.forward` after `predictive`: the graph on θ̂ when training, else the model's own.

    Attributes: `graph_module` (print `graph_module.code` to see the rewrite), `optimizer`, `s`.
    `d` is refreshed after each optimizer step (and after `optimizer.load_state_dict`); `c = lr·s`
    before each training forward, from the group's current `lr` and the s of the last refresh
    (`XGRAD_S` / `XGRAD_DISABLE` are read at refresh time).
    """

    def __init__(
        self,
        model: nn.Module,
        graph_module: fx.GraphModule,
        optimizer: torch.optim.Optimizer,
        reads: list[Read],
        coefficients: dict[str, tuple[int, nn.Parameter]],
        s: float,
    ) -> None:
        self.graph_module = graph_module
        self.optimizer = optimizer
        self.s = s
        self._model = model
        self._eager = type(model).forward
        self._reads = reads
        self._d_of = {id(r.param): r.d for r in reads}
        self._coefficients = coefficients
        self._s_now = 0.0
        self._live: set[str] = set()  # names of the d buffers that are not zero
        self._allocate()
        ref = weakref.ref(self)
        self._hooks = [
            optimizer.register_step_post_hook(lambda *_: _refresh(ref)),
            optimizer.register_load_state_dict_post_hook(lambda *_: _refresh(ref)),
        ]
        self.refresh()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._model.training and torch.is_grad_enabled():
            self._update_coefficients()
            return self.graph_module(*args, **kwargs)
        return self._eager(self._model, *args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """A copy of the model (an EMA, a best-so-far snapshot) is a plain model: its own forward.

        The copy is not the optimizer's, so nothing would refresh its prediction.
        """
        return _own_forward(memo.get(id(self._model), self._model))

    def __reduce__(self) -> tuple[Any, tuple[nn.Module]]:
        return _own_forward, (self._model,)  # torch.save(model): the same, when loaded

    def __repr__(self) -> str:
        return (
            f"PredictiveForward({type(self._model).__name__}, s={self.s}, "
            f"{len(self._reads)} predicted parameters)"
        )

    def _allocate(self) -> None:
        """d = 0 and c = 0, on each parameter's device (again after `model.to(...)`)."""
        gm = self.graph_module
        for r in self._reads:
            gm.register_buffer(r.d, torch.zeros_like(r.param, requires_grad=False), False)
        for name, (_, p) in self._coefficients.items():
            dtype = torch.promote_types(p.dtype, torch.float32)
            gm.register_buffer(name, torch.zeros((), device=p.device, dtype=dtype), False)
        self._live = set()

    def _moved(self) -> bool:
        if not self._reads:
            return False
        p, d = self._reads[0].param, getattr(self.graph_module, self._reads[0].d)
        return p.device != d.device or p.dtype != d.dtype

    @torch.compiler.disable
    @torch.no_grad()
    def _update_coefficients(self) -> None:
        """c = lr·s from each group's current lr (kept out of torch.compile: no recompiles)."""
        if self._moved():
            self._allocate()
            self.refresh()
        groups = self.optimizer.param_groups
        for name, (index, _) in self._coefficients.items():
            c: Tensor = getattr(self.graph_module, name)
            lr = groups[index]["lr"]
            if lr is None:  # transformers' Adafactor: the rule's Δθ carries the step size
                lr = 1.0
            if isinstance(lr, Tensor):
                c.copy_(lr).mul_(self._s_now)
            else:
                c.fill_(float(lr) * self._s_now)

    @torch.no_grad()
    def refresh(self) -> None:
        """d = Δθ(t+1) (Table I, via `xgrad_rewrite.runtime.directions`) for every read param."""
        self._s_now = effective_s(self.s)
        gm = self.graph_module
        fresh: set[str] = set()
        if self._s_now > 0:
            targets, sources = [], []
            for p, delta, _ in directions(self.optimizer):
                name = self._d_of.get(id(p))
                if name is not None:
                    targets.append(getattr(gm, name))
                    sources.append(delta)
                    fresh.add(name)
            if targets:  # copied, not rebound: fixed addresses suit CUDA graphs and compile
                torch._foreach_copy_(targets, sources)
        stale = self._live - fresh  # no Δθ now (s=0, or a parameter without state): d = 0
        if stale:
            torch._foreach_zero_([getattr(gm, name) for name in stale])
        self._live = fresh

    def remove(self) -> None:
        """Detach from the optimizer and give the model its own forward back."""
        for hook in self._hooks:
            hook.remove()
        if self._model.__dict__.get("forward") is self:
            del self._model.__dict__["forward"]


def _own_forward(model: nn.Module) -> Any:
    """The model class's forward, bound: what a copy of a predictive model runs."""
    return types.MethodType(type(model).forward, model)


def _is_own_forward(model: nn.Module, forward: Any) -> bool:
    return (
        isinstance(forward, types.MethodType)
        and forward.__self__ is model
        and forward.__func__ is type(model).forward
    )


def _refresh(ref: weakref.ref[PredictiveForward]) -> None:
    forward = ref()
    if forward is not None:
        forward.refresh()


def _coefficient_names(optimizer: torch.optim.Optimizer) -> dict[int, tuple[str, int]]:
    """(c name, group index) per param id: lr is per group, c per group × device × dtype."""
    names: dict[int, tuple[str, int]] = {}
    keys: dict[tuple[int, torch.device, torch.dtype], str] = {}
    for index, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            key = (index, p.device, p.dtype)
            names[id(p)] = (keys.setdefault(key, f"xgrad_c{len(keys)}"), index)
    return names


def _target(model: nn.Module) -> nn.Module:
    """The module whose forward to replace (DDP's `.module`); refuse what cannot work."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
        raise TypeError(
            "xgrad_rewrite.fx.predictive: pass the model before torch.compile: "
            "`model = torch.compile(xgrad.fx.predictive(model, optimizer, s))`."
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"xgrad_rewrite.fx.predictive needs an nn.Module, got {type(model)!r}")
    own = model.__dict__.get("forward")
    if isinstance(own, PredictiveForward):
        own.remove()  # wrapping again (a re-run notebook cell) replaces the old prediction
    elif _is_own_forward(model, own):  # a copy of a predictive model
        del model.__dict__["forward"]
    elif own is not None:
        raise UntraceableModelError(
            f"{type(model).__name__} has an instance-level `forward` ({own!r}) set by another "
            "library; the FX path traces the class's forward and would lose it. Apply "
            "xgrad_rewrite.fx.predictive before that library wraps the model, or use the eager "
            "path (`xgrad-rewrite train.py`, default mode)."
        )
    return model


def predictive(model: nn.Module, optimizer: Any, s: float = 1.0) -> nn.Module:
    """Make `model`'s training forward read θ̂ = θ − lr·s·Δθ (eq. 31) for `optimizer`'s parameters.

    Returns the same model object (DDP: the wrapper, with its `.module` changed), whose `forward`
    is now a `PredictiveForward`; a `torch.fx.GraphModule` is accepted like any module.
    Raises `UntraceableModelError` (a TypeError) when torch.fx cannot trace the model, naming
    the failing module and line, and the runtime's TypeError for an optimizer without a rule.
    """
    opt = unwrap(optimizer)
    rule_for(opt)
    effective_s(s)  # a bad s fails here, not after the first step
    target = _target(model)
    coefficient_of = _coefficient_names(opt)
    graph, constants = trace(target, coefficient_of)
    reads = predict_reads(graph, target, {k: name for k, (name, _) in coefficient_of.items()})
    if not reads:
        raise ValueError(
            f"xgrad_rewrite.fx.predictive: {type(target).__name__}'s forward reads none of the "
            "optimizer's parameters; was the optimizer built from another model's parameters?"
        )
    coefficients = {r.c: (coefficient_of[id(r.param)][1], r.param) for r in reads}
    gm = fx.GraphModule(nn.Module(), fx.Graph(), class_name=f"Predictive{type(target).__name__}")
    gm.add_module(ROOT, target)
    for name, value in constants.items():
        setattr(gm, name, value)
    forward = PredictiveForward(target, gm, opt, reads, coefficients, float(s))
    gm.graph = graph
    target.forward = forward
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo `predictive`: the model's own forward back, the optimizer hooks removed."""
    target = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    own = target.__dict__.get("forward")
    if isinstance(own, PredictiveForward):
        own.remove()
    return model
