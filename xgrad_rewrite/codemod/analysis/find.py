"""Find: every training step in a module, and where its predict/restore calls belong.

The output is a list of :class:`Plan` records (plain data: which optimizer, which backward, which
step, the predict and restore slots, or the diagnostic saying why not); :mod:`.patch` applies them.
"""

from __future__ import annotations

import ast
import bisect
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TypeVar

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.analysis.binding import Bindings
from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Block, Navigator, Slot
from xgrad_rewrite.codemod.analysis.collect import collect
from xgrad_rewrite.codemod.analysis.dataflow import (
    MUTATORS,
    Modules,
    arg_values,
    callee_name,
    dotted,
    find_modules,
    is_forward,
    no_grad_between,
    positional,
    predict_item,
    restore_item,
    uses,
)
from xgrad_rewrite.codemod.analysis.identity import Identities, Identity
from xgrad_rewrite.codemod.analysis.known_optimizers import is_supported, qualified
from xgrad_rewrite.codemod.analysis.positions import Positions
from xgrad_rewrite.codemod.analysis.scopes import Scopes
from xgrad_rewrite.codemod.api import Options

_LOOPS = (ast.For, ast.AsyncFor, ast.While)


@dataclass(eq=False)
class Backward:
    call: ast.Call
    at: tuple[ast.stmt, Block]
    loss: set[str]
    loss_expr: ast.expr
    line: int
    column: int


@dataclass(eq=False)
class Step:
    call: ast.Call
    optimizer: ast.expr
    at: tuple[ast.stmt, Block]
    line: int
    column: int
    closure: ast.expr | None = None
    backwards: list[Backward] = field(default_factory=list)
    # The first step of the group this step was paired in (itself when alone): every
    # optimizer of a group is restored before that one.
    first_of_group: Step | None = None


@dataclass(eq=False)
class Note:
    """A diagnostic before its position in the returned text is known."""

    code: str
    node: ast.AST
    message: str


@dataclass(eq=False)
class Plan:
    """One training step: ``optimizer`` is its source text. ``predict``/``restore`` are None when
    that call is not inserted (a wrapper restores through the runtime's step hook; a skipped
    loop has ``notes`` saying why). Nodes rather than line numbers, so positions can be reported
    in the text finally returned."""

    optimizer: str
    backward: ast.AST
    step: ast.AST
    predict: Slot | None
    restore: Slot | None
    notes: list[Note] = field(default_factory=list)

    @property
    def patched(self) -> bool:
        return self.predict is not None or self.restore is not None


class Finder:
    """Walks the tree once and answers the questions the finder asks."""

    def __init__(self, module: ast.Module, source: str) -> None:
        self.module = module
        self.positions = Positions(source)
        self.collected = collect(module)
        self.nav = Navigator(self.collected.parents, self.collected.blocks)
        scopes = Scopes(module, self.collected.parents)
        self.ids = Identities(self.collected, self.nav, scopes)
        self.bindings = Bindings(self.nav, scopes)
        self.modules = find_modules(self.collected.calls, self.collected.fors)
        self._helpers: dict[tuple[int, frozenset[str]], bool] = {}
        self._fills: list[tuple[str, ast.AST, ast.Call]] | None = None

    def code(self, node: ast.AST) -> str:
        return self.positions.segment(node)

    def where(self, node: ast.AST) -> tuple[int, int]:
        return self.positions.start(node)

    # -- collection -------------------------------------------------------------------------
    def backwards(self) -> list[Backward]:
        found = []
        for call in self.collected.calls:
            if not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr not in ("backward", "manual_backward"):
                continue
            args = positional(call)
            loss_expr = args[0] if args else call.func.value
            at = self.nav.item_of(call)
            if at is None:
                continue
            line, column = self.where(call)
            found.append(Backward(call, at, uses(loss_expr), loss_expr, line, column))
        return found

    def steps(self) -> list[Step]:
        found = []
        for call in self.collected.calls:
            if not isinstance(call.func, ast.Attribute) or call.func.attr != "step":
                continue
            receiver = call.func.value
            args = positional(call)
            closure = next((k.value for k in call.keywords if k.arg == "closure"), None)
            optimizer: ast.expr | None = None
            if not args and dotted(receiver) is not None:
                optimizer = receiver
            elif len(args) == 1 and dotted(args[0]) is not None:
                arg = args[0]
                if self.ids.is_grad_scaler(receiver):
                    optimizer = arg  # scaler.step(optimizer)
                elif self._is_closure(arg, call):
                    optimizer, closure = receiver, arg
                elif self.ids.classify(arg).kind == "optimizer":
                    optimizer = arg
            elif len(args) == 1 and isinstance(args[0], ast.Lambda):
                optimizer, closure = receiver, args[0]
            if optimizer is None:
                continue
            at = self.nav.item_of(call)
            if at is None:
                continue
            line, column = self.where(call)
            found.append(Step(call, optimizer, at, line, column, closure))
        return found

    def _is_closure(self, arg: ast.expr, call: ast.Call) -> bool:
        if not isinstance(arg, ast.Name):
            return False
        owner = self.nav.scope_owner(call)
        return any(
            f.name == arg.id and self.nav.scope_owner(f) is owner for f in self.collected.functions
        )

    # -- pairing ----------------------------------------------------------------------------
    def pair(
        self,
        backward: Backward,
        steps: dict[int, list[Step]],
        backwards: dict[int, list[Backward]],
    ) -> tuple[list[Step], list[Step]]:
        """(the steps this backward's gradients feed, candidates left out as unproven).

        The candidates are the ``.step()`` calls after the backward in the same function that
        nothing marks as something else, from the first of them up to the next backward after
        it, within the loop that holds both: ``loss.backward(); enc_opt.step();
        dec_opt.step()`` feeds two optimizers. Of those, every one shown to be an optimizer is
        patched; an unknown receiver only when it is the one candidate (``sampler.step()``
        beside a proven ``optimizer.step()`` is left out, and two unknowns are both left out).
        ``steps`` and ``backwards`` are :func:`by_function`'s grouping of the module's.
        """
        owner = self.nav.scope_owner(backward.call)
        start = (backward.line, backward.column)
        mine = steps.get(id(owner), [])
        index = bisect.bisect_right(mine, start, key=lambda s: (s.line, s.column))
        candidates = (
            s
            for s in mine[index:]
            if s.closure is None and self.ids.classify(s.optimizer).kind != "not"
        )
        first = next(candidates, None)
        if first is None:
            return [], []
        loop = self.bound(backward.call, first.call)[0]
        later = backwards.get(id(owner), [])
        at = bisect.bisect_right(
            later, (first.line, first.column), key=lambda b: (b.line, b.column)
        )
        limit = (later[at].line, later[at].column) if at < len(later) else None
        group = [first]
        for s in candidates:
            if limit is not None and (s.line, s.column) >= limit:
                break
            if loop is owner or loop in self.nav.ancestors(s.call):
                group.append(s)
        proven = [
            s
            for s in group
            if self.ids.classify(s.optimizer).kind == "optimizer"
            or self.ids.has_zero_grad(s.optimizer)
        ]
        if proven:
            return proven, [s for s in group if s not in proven]
        if len({self.code(s.optimizer) for s in group}) == 1:
            return group, []
        return [], group

    def filled_elsewhere(self, names: set[str], at: ast.AST) -> tuple[str, int] | None:
        """A name the loss reads from before its loop that another function fills with
        ``.append(...)``/``.extend(...)`` (REINFORCE's ``policy.saved_log_probs``, minimalRL's
        ``self.data``): the forwards whose outputs it holds ran there, before any place predict
        could go. (name, line of that fill), else None."""
        if self._fills is None:  # every `X.append(...)` of the module, found once
            self._fills = [
                (filled, self.nav.scope_owner(call), call)
                for call in self.collected.calls
                if isinstance(call.func, ast.Attribute)
                and call.func.attr in MUTATORS
                and (filled := dotted(call.func.value)) is not None
            ]
        owner = self.nav.scope_owner(at)
        for filled, where, call in self._fills:
            if where is not owner and any(n == filled or n.startswith(filled + ".") for n in names):
                return filled, self.where(call)[0]
        return None

    def helper_runs_forward(self, call: ast.Call, modules: Modules) -> bool | None:
        """For a call of a function or method defined in this file, whether its body may run a
        forward by the caller's rules (a module call, or a helper that does); None for any
        other call."""
        function = self._defined_function(call)
        if function is None:
            return None
        key = (id(function), modules.trained)
        if key not in self._helpers:
            self._helpers[key] = False  # a recursive helper: its other calls decide
            self._helpers[key] = any(is_forward(s, modules) for s in function.body)
        return self._helpers[key]

    def _defined_function(self, call: ast.Call) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        func = call.func
        if isinstance(func, ast.Name):
            defined = self.ids.defined_here(func)
            return defined if isinstance(defined, FUNCTIONS) else None
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            return None
        if func.value.id == "self":
            cls = self.nav.enclosing(call, (ast.ClassDef,))
        else:
            cls = self.ids.instance_of(func.value)
        if not isinstance(cls, ast.ClassDef):
            return None
        return next((f for f in cls.body if isinstance(f, FUNCTIONS) and f.name == func.attr), None)

    def bound(self, a: ast.AST, b: ast.AST) -> Block:
        """The body of the innermost loop holding both nodes (else their function's body)."""
        owner = self.nav.scope_owner(a)
        b_ancestors = {id(n) for n in self.nav.ancestors(b)}
        for node in self.nav.ancestors(a):
            if node is owner:
                break
            if isinstance(node, _LOOPS) and id(node) in b_ancestors:
                return (node, "body")
        return (owner, "body")


_Located = TypeVar("_Located", "Step", "Backward")


def by_function(finder: Finder, items: list[_Located]) -> dict[int, list[_Located]]:
    """Steps (or backwards) by the function that holds them (its ``id``), in source order."""
    grouped: dict[int, list[_Located]] = defaultdict(list)
    for item in items:
        grouped[id(finder.nav.scope_owner(item.call))].append(item)
    for group in grouped.values():
        group.sort(key=lambda i: (i.line, i.column))
    return grouped


def find(finder: Finder, options: Options) -> list[Plan]:
    """Every training step of the finder's module as a :class:`Plan`, in source order."""
    steps = finder.steps()
    plans: list[Plan] = []
    closure_names = {s.closure.id for s in steps if isinstance(s.closure, ast.Name)}
    manual = _manual_calls(finder)

    backwards = finder.backwards()
    steps_by_function = by_function(finder, steps)
    backwards_by_function = by_function(finder, backwards)
    unproven: dict[int, Step] = {}
    beside: set[int] = set()  # left out next to a proven optimizer
    for backward in backwards:
        function = finder.nav.enclosing(backward.call, FUNCTIONS)
        if isinstance(function, FUNCTIONS) and function.name in closure_names:
            continue  # reported once, at its closure step
        if _hand_predicted(finder, backward.call):
            continue  # the user placed `with xgrad.predicted(optimizer):` themselves
        group, left_out = finder.pair(backward, steps_by_function, backwards_by_function)
        for step in left_out:
            unproven.setdefault(id(step), step)
            if group:
                beside.add(id(step))
        if not group:
            if not left_out:
                message = codes.message(codes.NO_STEP)
                plans.append(_skipped("", backward.call, backward.call, codes.NO_STEP, message))
            continue
        first = min(group, key=lambda s: (s.line, s.column))
        for step in group:
            step.backwards.append(backward)
            step.first_of_group = first
    for step in unproven.values():
        if step.backwards:
            continue  # patched for another backward
        name = finder.code(step.optimizer)
        code = codes.BESIDE_OPTIMIZER if id(step) in beside else codes.NOT_PROVEN
        why = "several receivers are stepped after the same backward"
        message = codes.message(code, receiver=name, why=why)
        plans.append(_skipped(name, step.call, step.call, code, message))

    for step in steps:
        identity = finder.ids.classify(step.optimizer)
        name = finder.code(step.optimizer)
        if step.closure is not None:
            if identity.kind != "not" and (step.backwards or _closure_has_backward(finder, step)):
                plans.append(_closure_plan(step, name, identity))
            continue
        if step.backwards and (id(finder.nav.scope_owner(step.call)), name) in manual:
            message = codes.message(codes.MANUAL, optimizer=name)
            plans.append(_skipped(name, step.backwards[0].call, step.call, codes.MANUAL, message))
        elif step.backwards:
            plans.append(_step_plan(finder, step, name, identity, options))
        elif (
            identity.kind == "optimizer"
            and id(step) not in unproven
            and (id(finder.nav.scope_owner(step.call)), name) not in manual
            and not _hand_predicted(finder, step.call)
        ):
            message = codes.message(codes.STEP_WITHOUT_BACKWARD, optimizer=name)
            plans.append(_skipped(name, step.call, step.call, codes.STEP_WITHOUT_BACKWARD, message))

    plans.extend(_wrapper_plans(finder, plans, options))
    plans.sort(key=lambda p: (finder.where(p.step), finder.where(p.backward)))
    return plans


def _manual_calls(finder: Finder) -> set[tuple[int, str]]:
    """(function, optimizer) pairs where the script calls the runtime itself: any
    ``import xgrad_rewrite.runtime as A`` left after revert, then ``A.predict(opt, ...)``,
    ``A.restore(opt)`` or ``A.predicted(opt, ...)``."""
    aliases = {
        alias for stmt in finder.module.body if (alias := inserted.runtime_alias(stmt)) is not None
    }
    found: set[tuple[int, str]] = set()
    if not aliases:
        return found
    for call in finder.collected.calls:
        if inserted.hand_call(call, aliases) and (values := arg_values(call)):
            owner = finder.nav.scope_owner(call)
            found.add((id(owner), finder.code(values[0])))
    return found


def _hand_predicted(finder: Finder, node: ast.AST) -> bool:
    """Inside ``with <runtime>.predicted(...):``, written by hand."""
    for ancestor in finder.nav.ancestors(node):
        if isinstance(ancestor, (ast.With, ast.AsyncWith)) and any(
            isinstance(i.context_expr, ast.Call) and inserted.is_context_call(i.context_expr)
            for i in ancestor.items
        ):
            return True
    return False


def _closure_has_backward(finder: Finder, step: Step) -> bool:
    if not isinstance(step.closure, ast.Name):
        return isinstance(step.closure, ast.Lambda)
    owner = finder.nav.scope_owner(step.call)
    for f in finder.collected.functions:
        if f.name != step.closure.id or finder.nav.scope_owner(f) is not owner:
            continue
        for backward in finder.backwards():
            if f in finder.nav.ancestors(backward.call):
                return True
    return False


def _closure_plan(step: Step, name: str, identity: Identity) -> Plan:
    if identity.class_name and not is_supported(identity.class_name):
        return _unsupported(step, name, identity.class_name)
    message = codes.message(codes.CLOSURE_STEP, optimizer=name)
    return _skipped(name, step.call, step.call, codes.CLOSURE_STEP, message)


def _unsupported(step: Step, name: str, class_name: str) -> Plan:
    message = codes.message(
        codes.UNSUPPORTED_OPTIMIZER,
        optimizer=name,
        cls=qualified(class_name),
        outcome="loop left unchanged",
    )
    return _skipped(name, step.call, step.call, codes.UNSUPPORTED_OPTIMIZER, message)


def _skipped(optimizer: str, backward: ast.AST, step: ast.AST, code: str, message: str) -> Plan:
    return Plan(optimizer, backward, step, None, None, [Note(code, step, message)])


def _step_plan(finder: Finder, step: Step, name: str, identity: Identity, options: Options) -> Plan:
    """Where this step's predict and restore go: the placement invariant is decided here.

    On every path through the loop:

    1. ``predict`` runs before every forward whose output can reach this step's backward
       (otherwise the backward meets weights changed in place after its forward);
    2. ``predict`` never runs where its optimizer may be unbound (otherwise the inserted line
       raises where the original did not);
    3. ``restore`` runs before the step, and before the unscale/clipping that belongs to it
       (before the first step of the group when several optimizers share one backward).

    Where 1 or 2 cannot be proven (no forward found, a name bound under a condition, outputs
    stored by forwards elsewhere) the step gets a note and no call at all: a note is fine, a
    crash never is. Being conservative may leave some no-grad code on θ̂ (noted: XG112, XG117).
    """
    first = step.backwards[0]
    if identity.class_name and not is_supported(identity.class_name):
        return _unsupported(step, name, identity.class_name)
    if options.optimizers and name not in options.optimizers:
        message = codes.message(codes.FILTERED, optimizer=name, outcome="not patched")
        return _skipped(name, first.call, step.call, codes.FILTERED, message)
    forwards = []
    # Placement invariant: predict goes before every forward the loss depends on (a module, a
    # helper of this file whose body calls one, a method such as `self.sample(obs)`); later
    # would leave a forward on the current weights whose graph the backward then reaches
    # through weights changed in place (autograd's "modified by an inplace operation"). And
    # predict never goes where its optimizer may be unbound (checked below).
    named = replace(finder.modules, helpers=finder.helper_runs_forward)
    rest: set[str] = set()
    for backward in step.backwards:
        bound = finder.bound(backward.call, step.call)
        # Modules the script names as such first; if none of them runs in this step (say a
        # `net` parameter never seen with `.parameters()`), any call that is not data handling.
        for modules in (named, replace(named, trained=frozenset())):
            item = predict_item(
                finder.nav,
                backward.at,
                backward.loss,
                bound,
                modules,
                is_forward(backward.loss_expr, modules),
                rest,
            )
            if item is not None:
                forwards.append(item)
                break
    stored = finder.filled_elsewhere(rest, step.call)
    if stored is not None:
        stored_name, where = stored
        message = codes.message(
            codes.STORED_OUTPUTS, optimizer=name, stored=stored_name, line=where
        )
        return _skipped(name, first.call, step.call, codes.STORED_OUTPUTS, message)
    if not forwards:
        message = codes.message(codes.NO_FORWARD, optimizer=name)
        plan = _skipped(name, first.call, step.call, codes.NO_FORWARD, message)
        plan.notes[0].node = first.call
        return plan
    predict = min(forwards, key=finder.where)
    missing = finder.bindings.unbound(step.optimizer, predict)
    if missing is not None:
        why = f"`{missing}` is not bound on every path to that line"
        line = finder.where(predict)[0]
        message = codes.message(codes.UNBOUND, optimizer=name, line=line, why=why)
        return _skipped(name, first.call, step.call, codes.UNBOUND, message)
    last = step.backwards[-1]
    at = (step.first_of_group or step).at
    same_block = last.at[1] == at[1]
    restore = restore_item(at, last.at[0] if same_block else None, name)
    plan = Plan(name, first.call, step.call, Slot(predict), Slot(restore))
    guard = _condition_of_backward(finder, first.call, predict)
    if guard is not None:
        message = codes.message(
            codes.CONDITIONAL_BACKWARD, optimizer=name, condition=finder.code(guard.test)
        )
        plan.notes.append(Note(codes.CONDITIONAL_BACKWARD, guard, message))
    owned = finder.ids.modules_of(step.optimizer)
    for block in no_grad_between(finder.nav, predict, first.at[0], owned):
        message = codes.message(codes.NO_GRAD_ON_PREDICTED, optimizer=name)
        plan.notes.append(Note(codes.NO_GRAD_ON_PREDICTED, block, message))
    return plan


def _condition_of_backward(finder: Finder, backward: ast.AST, predict: ast.stmt) -> ast.If | None:
    """The ``if`` that the backward runs under and the forward (where predict goes) does not
    (``if train: loss.backward(); opt.step()`` after a forward shared with evaluation)."""
    inside = {id(n) for n in finder.nav.ancestors(predict)}
    for node in finder.nav.ancestors(backward):
        if isinstance(node, (*FUNCTIONS, ast.Lambda, *_LOOPS)) or id(node) in inside:
            return None
        if isinstance(node, ast.If):
            # `if scaler: scaler(loss, opt) else: loss.backward()` trains either way: only an
            # `if` with nothing in its other branch skips the step for some calls
            return node if not node.orelse else None
    return None


def _wrapper_plans(finder: Finder, plans: list[Plan], options: Options) -> list[Plan]:
    """``loss_scaler(loss, optimizer, ...)``: a call that takes a loss and an optimizer and
    does backward and step itself (MAE/DeiT style). Predict only; the runtime's step pre-hook
    restores before the wrapper's step."""
    patched = {p.optimizer for p in plans if p.patched}
    out = []
    for expr in finder.collected.exprs:
        call = expr.value
        if not isinstance(call, ast.Call):
            continue
        if callee_name(call) in ("backward", "step", "manual_backward"):
            continue
        args = positional(call)
        if not args or not isinstance(args[0], ast.Name):
            continue
        loss = args[0]
        optimizer = next(
            (
                value
                for value in arg_values(call)[1:]
                if dotted(value) is not None and finder.ids.classify(value).kind == "optimizer"
            ),
            None,
        )
        loop = finder.nav.enclosing(call, _LOOPS + FUNCTIONS)
        if optimizer is None or not isinstance(loop, _LOOPS):
            continue
        name = finder.code(optimizer)
        if name in patched:
            continue
        at = finder.nav.item_of(call)
        assert at is not None
        item = predict_item(finder.nav, at, {loss.id}, (loop, "body"), finder.modules)
        if item is None:
            continue
        if options.optimizers and name not in options.optimizers:
            message = codes.message(codes.FILTERED, optimizer=name, outcome="not patched")
            out.append(_skipped(name, call, call, codes.FILTERED, message))
            continue
        message = codes.message(codes.WRAPPER_STEP, wrapper=finder.code(call.func), optimizer=name)
        out.append(
            Plan(name, call, call, Slot(item), None, [Note(codes.WRAPPER_STEP, call, message)])
        )
    return out
