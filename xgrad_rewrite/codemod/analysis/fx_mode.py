"""``Options(mode="fx")``: wrap the model once instead of patching each step (the FX path).

Inserted right after the statement that builds the optimizer from ``<model>.parameters()`` (the
first point where both exist): ``<model> = xgrad.fx.predictive(<model>, <optimizer>, s=N)``.
``xgrad`` is still ``xgrad_rewrite.runtime``, which exposes the FX path as its ``fx`` attribute.
"""

from __future__ import annotations

import ast

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod.analysis.blocks import Slot
from xgrad_rewrite.codemod.analysis.dataflow import callee_name, dotted
from xgrad_rewrite.codemod.analysis.find import Finder, Note, Plan
from xgrad_rewrite.codemod.analysis.known_optimizers import is_supported, qualified
from xgrad_rewrite.codemod.api import Options


def find_fx(finder: Finder, options: Options) -> list[tuple[Plan, str]]:
    """(plan, model source) for each optimizer built from a model's parameters."""
    out: list[tuple[Plan, str]] = []
    for assign in finder.collected.assigns:
        if len(assign.targets) != 1 or not isinstance(assign.value, ast.Call):
            continue
        target = assign.targets[0]
        if dotted(target) is None or isinstance(target, ast.Subscript):
            continue
        call = assign.value
        identity = finder.ids.classify_value(call)
        model = _model_of(call)
        if model is None or (
            identity.kind != "optimizer" and callee_name(call) != "configure_optimizers"
        ):
            continue
        name = finder.code(target)
        at = finder.nav.item_of(assign)
        assert at is not None
        if identity.class_name and not is_supported(identity.class_name):
            message = codes.message(
                codes.UNSUPPORTED_OPTIMIZER,
                optimizer=name,
                cls=qualified(identity.class_name),
                outcome="not wrapped",
            )
            out.append(
                (
                    Plan(
                        name,
                        assign,
                        assign,
                        None,
                        None,
                        [Note(codes.UNSUPPORTED_OPTIMIZER, assign, message)],
                    ),
                    model,
                )
            )
            continue
        if options.optimizers and name not in options.optimizers:
            message = codes.message(codes.FILTERED, optimizer=name, outcome="not wrapped")
            out.append(
                (
                    Plan(name, assign, assign, None, None, [Note(codes.FILTERED, assign, message)]),
                    model,
                )
            )
            continue
        out.append((Plan(name, assign, assign, Slot(at[0], after=True), None), model))
    if not any(plan.predict for plan, _ in out) and finder.module.body:
        message = codes.message(codes.FX_NO_MODEL)
        first = finder.module.body[0]
        out.append(
            (Plan("", first, first, None, None, [Note(codes.FX_NO_MODEL, first, message)]), "")
        )
    return out


def _model_of(call: ast.Call) -> str | None:
    """``model`` in ``torch.optim.X(model.parameters(), ...)`` / ``model.configure_optimizers``."""
    if callee_name(call) == "configure_optimizers" and isinstance(call.func, ast.Attribute):
        return dotted(call.func.value)
    for inner in _calls(call):
        if isinstance(inner.func, ast.Attribute) and inner.func.attr in (
            "parameters",
            "named_parameters",
        ):
            name = dotted(inner.func.value)
            if name is not None:
                return name
    return None


def _calls(node: ast.AST) -> list[ast.Call]:
    """Calls in ``node``, in source order (depth first)."""
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Call):
            out.append(current)
        stack.extend(reversed(list(ast.iter_child_nodes(current))))
    return out
