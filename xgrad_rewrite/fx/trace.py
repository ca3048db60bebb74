"""Trace a model so that every read of a predicted parameter is a `get_attr` node.

torch.fx's default tracer keeps `torch.nn` modules (Linear, Conv2d, ...) as opaque `call_module`
leaves, so their weights never appear in the graph. Here, for a module that holds (directly or
below it) a parameter we predict:
- the model's own modules, and the torch.nn layers in TRACED_THROUGH (plain functional forwards),
  are traced through, so their parameter reads become `get_attr` nodes;
- any other torch.nn layer (BatchNorm, LSTM, MultiheadAttention, Transformer layers, ...), whose
  forward checks input shapes in Python, becomes one `call_module_with(module, {name: tensor},
  *args)` node: its own forward run by `torch.func.functional_call` on the tensors the graph
  passes in (the predicted ones, after the rewrite).
Modules without a predicted parameter stay leaves, as with the default tracer.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Collection
from typing import Any

import torch
from torch import fx, nn

EAGER_HINT = (
    "Use the eager path instead: `xgrad-rewrite train.py --s N` (the default mode) puts "
    "`xgrad.predict(optimizer, s=N)` / `xgrad.restore(optimizer)` around forward and backward "
    "and works for any model."
)

_FX_DIR = os.path.dirname(fx.__file__)
_THIS_DIR = os.path.dirname(__file__)


class UntraceableModelError(TypeError):
    """The model cannot be traced by torch.fx (data-dependent control flow, hooks, ...).

    A TypeError, like the runtime's refusal of an optimizer it has no rule for: the argument is of
    a kind the FX path does not support; the eager path does.
    """


TRACED_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.PReLU,
)


def call_module_with(module: nn.Module, tensors: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """`module(*args, **kwargs)` with `tensors` standing in for its parameters of those names."""
    return torch.func.functional_call(module, tensors, args, kwargs)


class ParameterTracer(fx.Tracer):
    """Traces through every module that holds a parameter in `predicted` (by identity)."""

    def __init__(self, predicted: Collection[int]) -> None:
        super().__init__()
        self._predicted = predicted
        self._holds: dict[int, bool] = {}  # by module id: every call asks, deep models repeat

    def _holds_predicted(self, m: nn.Module) -> bool:
        holds = self._holds.get(id(m))
        if holds is None:
            holds = self._holds[id(m)] = any(id(p) in self._predicted for p in m.parameters())
        return holds

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._holds_predicted(m):
            return False
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if (
            self._holds_predicted(m)
            and type(m) not in TRACED_THROUGH
            and super().is_leaf_module(m, self.path_of_module(m))
        ):
            return self._call_with_parameters(m, args, kwargs)
        # Traced-through modules run their hooks once, at trace time, never again: refuse.
        hooks = (m._forward_pre_hooks, m._forward_hooks, m._backward_pre_hooks, m._backward_hooks)
        if self._holds_predicted(m) and any(hooks):
            name = self.path_of_module(m) or type(m).__name__
            raise UntraceableModelError(
                f"module `{name}` ({type(m).__name__}) has forward/backward hooks, which the "
                "traced graph would not run. " + EAGER_HINT
            )
        return super().call_module(m, forward, args, kwargs)

    def _call_with_parameters(self, m: nn.Module, args: Any, kwargs: Any) -> Any:
        path = self.path_of_module(m)
        tensors = {
            name: self.create_proxy("get_attr", f"{path}.{name}", (), {})
            for name, p in m.named_parameters()
            if id(p) in self._predicted
        }
        module = self.create_proxy("get_attr", path, (), {})
        call_args = (module, tensors, *args)
        return self.create_proxy("call_function", call_module_with, call_args, kwargs)


def trace(model: nn.Module, predicted: Collection[int]) -> tuple[fx.Graph, dict[str, Any]]:
    """(graph of the training-mode forward, tensor constants the tracer created).

    Traced in training mode whatever the current mode (the graph only ever runs in training
    mode); every module's flag is put back. torch.fx stores tensor constants on the root module:
    they are taken off it again and returned, so the user's model is left as it was.
    """
    tracer = ParameterTracer(predicted)
    modes = [(m, m.training) for m in model.modules()]
    before = set(vars(model))
    model.train()
    try:
        graph = tracer.trace(model)
    except UntraceableModelError:
        raise
    except Exception as error:
        raise UntraceableModelError(_explain(model, tracer, error)) from error
    finally:
        for m, mode in modes:
            m.training = mode
        added = {name: vars(model)[name] for name in set(vars(model)) - before}
        for name in added:
            delattr(model, name)
    return graph, added


def _explain(model: nn.Module, tracer: ParameterTracer, error: Exception) -> str:
    """Which module and which source line the trace failed in, and the way out."""
    where = ""
    if tracer.module_stack:
        qualname, module_type = next(reversed(tracer.module_stack.values()))
        type_name = getattr(module_type, "__name__", str(module_type))
        where = f" in `{qualname or 'forward'}` ({type_name})"
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not f.filename.startswith((_FX_DIR, _THIS_DIR))
    ]
    line = ""
    if frames:
        f = frames[-1]
        line = f" at {f.filename}:{f.lineno} ({f.name}: `{(f.line or '').strip()}`)"
    return (
        f"xgrad_rewrite.fx.predictive: cannot trace {type(model).__name__} with torch.fx{where}"
        f"{line}: {type(error).__name__}: {error}. {EAGER_HINT}"
    )
