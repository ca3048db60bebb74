"""Is this expression an optimizer? Decided by data flow, never by its name.

An expression is an *optimizer* when it was built from a ``torch.optim`` class or a third-party
one the runtime supports (any import alias, resolved through :mod:`.scopes`), by a class defined
in the file on an optimizer base, by a function of the file whose every ``return`` is one, when
it is a parameter annotated with an optimizer class, or when the script uses it as one (passes it
to an LR scheduler, reads its ``param_groups``, hands it to ``scaler.unscale_``). It is *not* one
when it was built by something known to return something else (an LR scheduler, a
``GradScaler``, ``argparse``, ``gym.make``, an EMA helper, a class defined in the file without an
optimizer base). Anything else is *unknown*: a function parameter, ``self.optimizer =
optimizer``, ``model.configure_optimizers(...)``; the finder accepts an unknown only when it is
the one candidate stepped after a backward (see :meth:`.find.Finder.pair`).

Answers are memoised per binding and per name, so classifying every step of a file whose loops
rebind the same names hundreds of times stays linear in practice.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

from xgrad_rewrite.codemod.analysis import known_optimizers as known
from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Navigator
from xgrad_rewrite.codemod.analysis.collect import Collected
from xgrad_rewrite.codemod.analysis.dataflow import arg_values, callee_name, dotted, positional
from xgrad_rewrite.codemod.analysis.scopes import Scopes

Kind = Literal["optimizer", "unknown", "not"]
_NOT_BY_NAME = re.compile(
    r"schedul|(^|_)ema($|_)|^Ema|EMA|averaged|parse_args|ArgumentParser", re.I
)
_MAX_DEPTH = 4


@dataclass(frozen=True)
class Identity:
    kind: Kind
    class_name: str | None = None  # torch.optim class it was built from, when known


UNKNOWN = Identity("unknown")
NOT = Identity("not")


class Identities:
    """Classifies expressions of one module (see the module docstring)."""

    def __init__(self, collected: Collected, nav: Navigator, scopes: Scopes) -> None:
        self.collected = collected
        self.nav = nav
        self.scopes = scopes
        self._self_assigns: dict[int, dict[str, list[ast.expr]]] = {}
        self.evidence: set[tuple[int, str]] = set()
        self.zero_grads: set[tuple[int, str]] = set()  # `X.zero_grad()` somewhere
        self._values: dict[int, Identity] = {}
        self._names: dict[tuple[int, str], Identity] = {}
        self._callers: dict[int, list[ast.Call]] = {}
        self._modules: dict[tuple[int, str], set[str] | None] = {}
        self._owners: dict[int, set[str]] = {}  # id(value) -> its X of X.parameters()
        self._collect_evidence()

    # -- keys: a dotted name within the function (or class, for self.*) it lives in -------------
    def key(self, node: ast.AST) -> tuple[int, str] | None:
        name = dotted(node)
        if name is None:
            return None
        if name.startswith("self."):
            owner = self.nav.enclosing(node, (ast.ClassDef, ast.Module))
        else:
            owner = self.nav.scope_owner(node)
        return (id(owner), name)

    def qualified_names(self, node: ast.AST) -> set[str]:
        return self.scopes.qualified_names(node)

    def _collect_evidence(self) -> None:
        """Uses that only an optimizer has."""
        for node in self.collected.attributes:
            if node.attr == "param_groups":
                self._note(node.value)
        for call in self.collected.calls:
            name = callee_name(call)
            values = arg_values(call)
            if name == "zero_grad" and isinstance(call.func, ast.Attribute):
                key = self.key(call.func.value)
                if key is not None:
                    self.zero_grads.add(key)
            if name == "unscale_" and values:
                self._note(values[0])
            elif self._is_scheduler_call(call):
                scheduled = positional(call) + [
                    k.value for k in call.keywords if k.arg == "optimizer"
                ]
                if scheduled:
                    self._note(scheduled[0])

    def _note(self, node: ast.AST) -> None:
        key = self.key(node)
        if key is not None:
            self.evidence.add(key)

    def _is_scheduler_call(self, call: ast.Call) -> bool:
        qualified = self.qualified_names(call.func)
        if any(q.startswith("torch.optim.lr_scheduler.") for q in qualified):
            return True
        name = callee_name(call) or ""
        return "schedul" in name.lower() or "get_linear_schedule" in name or name.endswith("LR")

    def is_grad_scaler(self, node: ast.AST) -> bool:
        name = dotted(node) or ""
        if "scaler" in name.rsplit(".", 1)[-1].lower():
            return True
        return any(self._value_is(v, known.GRAD_SCALERS) for v in self._assigned_values(node))

    def _value_is(self, value: ast.AST, names: frozenset[str]) -> bool:
        return isinstance(value, ast.Call) and bool(self.qualified_names(value.func) & names)

    # -- classification --------------------------------------------------------------------
    def classify(self, node: ast.AST, depth: int = 0) -> Identity:
        cache = self._cache_key(node)
        if cache is not None and cache in self._names:
            return self._names[cache]
        identity = self._classify(node, depth)
        if cache is not None and depth == 0:
            self._names[cache] = identity
        return identity

    def _cache_key(self, node: ast.AST) -> tuple[int, str] | None:
        """Names read in the same scope have the same bindings: one answer for all of them."""
        name = dotted(node)
        if name is None or isinstance(node, ast.Subscript):
            return None
        if name.startswith("self."):
            owner = self.nav.enclosing(node, (ast.ClassDef, ast.Module))
        else:
            owner = self.scopes.scope_of(node)
        return (id(owner), name)

    def _classify(self, node: ast.AST, depth: int) -> Identity:
        if isinstance(node, ast.Subscript):
            return self._element_identity(node.value, depth)
        found = [self.classify_value(v, depth) for v in self._assigned_values(node)]
        for identity in found:
            if identity.kind == "optimizer":
                return identity
        key = self.key(node)
        if key is not None and key in self.evidence:
            return Identity("optimizer")
        annotated = self._annotation(node)
        if annotated is not None:
            return annotated
        if any(i.kind == "not" for i in found):
            return NOT  # safe either way: "not" only ever means "left unpatched"
        return UNKNOWN

    def classify_value(self, value: ast.AST, depth: int = 0) -> Identity:
        if depth > _MAX_DEPTH:
            return UNKNOWN
        if isinstance(value, (ast.Name, ast.Attribute)):
            return self.classify(value, depth + 1)
        if not isinstance(value, ast.Call):
            return UNKNOWN
        if id(value) not in self._values:
            self._values[id(value)] = self._classify_call(value, depth)
        return self._values[id(value)]

    def _classify_call(self, value: ast.Call, depth: int) -> Identity:
        for name in self.qualified_names(value.func):
            cls = known.optimizer_class(name)
            if cls is not None:
                return Identity("optimizer", cls)
            if name in known.NOT_OPTIMIZER_CALLS or name.startswith(known.NOT_OPTIMIZER_MODULES):
                return NOT
        if self._is_scheduler_call(value) or _NOT_BY_NAME.search(callee_name(value) or ""):
            return NOT
        if isinstance(value.func, ast.Name):
            defined = self.defined_here(value.func)
            if isinstance(defined, ast.ClassDef):
                return self._class_identity(defined)
            if isinstance(defined, FUNCTIONS):
                return self._factory_identity(defined, depth)
        return UNKNOWN

    def _element_identity(self, container: ast.AST, depth: int) -> Identity:
        """``opts["enc"]`` of ``opts = {"enc": Adam(...), "dec": SGD(...)}``: an optimizer when
        every element of every literal bound to the container is one."""
        values = self._assigned_values(container)
        elements: list[ast.expr] = []
        for value in values:
            if isinstance(value, ast.Dict):
                elements.extend(value.values)
            elif isinstance(value, (ast.List, ast.Tuple)):
                elements.extend(value.elts)
            else:
                return UNKNOWN
        found = [self.classify_value(e, depth + 1) for e in elements]
        if found and all(i.kind == "optimizer" for i in found):
            return Identity("optimizer")
        return UNKNOWN

    def modules_of(self, node: ast.AST) -> set[str] | None:
        """The modules whose ``X.parameters()`` an optimizer was built from (``Adam(
        netD.parameters())`` -> ``{"netD"}``); None when that is not visible."""
        cache = self._cache_key(node)
        if cache is not None and cache in self._modules:
            return self._modules[cache]
        out: set[str] | None = set()
        values = [v for v in self._assigned_values(node) if isinstance(v, ast.Call)]
        if not values:
            out = None
        for value in values:
            if id(value) not in self._owners:
                found = _parameter_owners(value)
                for argument in arg_values(value):
                    if isinstance(argument, ast.Name):
                        for bound in self._name_values(argument):
                            found |= _parameter_owners(bound)
                self._owners[id(value)] = found
            found = self._owners[id(value)]
            if not found or out is None:
                out = None
                break
            out |= found
        if cache is not None:
            self._modules[cache] = out
        return out

    def defined_here(self, name: ast.Name) -> ast.AST | None:
        """The one ``def``/``class`` of this file that ``name`` is bound to, if that is all."""
        binders = self.scopes.bindings(name)
        if len(binders) == 1 and isinstance(binders[0], (*FUNCTIONS, ast.ClassDef)):
            return binders[0]
        return None

    def _class_identity(self, cls: ast.ClassDef) -> Identity:
        """A class of this file: an optimizer when a base is one (its rule is the base's), else
        certainly not one (a sampler, an environment, a custom scheduler with ``step``)."""
        for base in cls.bases:
            for name in self.qualified_names(base):
                found = known.optimizer_class(name)
                if found is not None:
                    return Identity("optimizer", found)
                if name in ("torch.optim.Optimizer", "torch.optim.optimizer.Optimizer"):
                    return Identity("optimizer", "Optimizer")
            if isinstance(base, ast.Name) and isinstance(self.defined_here(base), ast.ClassDef):
                inherited = self._class_identity(self.defined_here(base))  # type: ignore[arg-type]
                if inherited.kind == "optimizer":
                    return inherited
        return NOT

    def _factory_identity(self, function: ast.AST, depth: int) -> Identity:
        """A function of this file whose every ``return`` gives an optimizer builds one."""
        returns = [
            node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Return)
            and node.value is not None
            and self.nav.scope_owner(node) is function
        ]
        if not returns:
            return UNKNOWN
        found = [self.classify_value(v, depth + 1) for v in returns]
        if all(i.kind == "optimizer" for i in found):
            return found[0]
        return UNKNOWN

    def _annotation(self, node: ast.AST) -> Identity | None:
        """``def train(model, optimizer: torch.optim.Optimizer)``: the annotation says it."""
        if not isinstance(node, ast.Name):
            return None
        for binder in self.scopes.bindings(node):
            if isinstance(binder, ast.arg) and binder.annotation is not None:
                for name in self.qualified_names(binder.annotation):
                    if name in ("torch.optim.Optimizer", "torch.optim.optimizer.Optimizer"):
                        return Identity("optimizer")
                    found = known.optimizer_class(name)
                    if found is not None:
                        return Identity("optimizer", found)
        return None

    def instance_of(self, name: ast.Name) -> ast.ClassDef | None:
        """The class of this file that ``name`` is always built from (``env = ToyEnv()``)."""
        values = self._name_values(name)
        classes = {
            id(d): d
            for v in values
            if isinstance(v, ast.Call)
            and isinstance(v.func, ast.Name)
            and isinstance(d := self.defined_here(v.func), ast.ClassDef)
        }
        if (
            values
            and len(classes) == 1
            and len(values) == len([v for v in values if isinstance(v, ast.Call)])
        ):
            return next(iter(classes.values()))
        return None

    def has_zero_grad(self, node: ast.AST) -> bool:
        """Whether the script calls ``node.zero_grad()`` (with a ``.step()``, an optimizer's
        pair of methods; a module has the first only)."""
        key = self.key(node)
        return key is not None and key in self.zero_grads

    def _assigned_values(self, node: ast.AST) -> list[ast.expr]:
        """Right-hand sides bound to this name (tuple unpacking mapped element by element)."""
        if isinstance(node, ast.Name):
            return self._name_values(node)
        name = dotted(node)
        if name is not None and name.startswith("self.") and isinstance(node, ast.Attribute):
            cls = self.nav.enclosing(node, (ast.ClassDef,))
            if cls is None:
                return []
            return self._class_assigns(cls).get(name, [])
        return []

    def _class_assigns(self, cls: ast.AST) -> dict[str, list[ast.expr]]:
        """``self.x = value`` assignments anywhere in a class, by ``self.x``."""
        if id(cls) not in self._self_assigns:
            table: dict[str, list[ast.expr]] = {}
            for assign in self.collected.assigns:
                if self.nav.enclosing(assign, (ast.ClassDef,)) is not cls:
                    continue
                for target in assign.targets:
                    for element in _flat_targets(target):
                        name = dotted(element)
                        if name and name.startswith("self.") and isinstance(element, ast.Attribute):
                            table.setdefault(name, []).extend(
                                _values_for(target, assign.value, name)
                            )
            self._self_assigns[id(cls)] = table
        return self._self_assigns[id(cls)]

    def _name_values(self, node: ast.Name) -> list[ast.expr]:
        values: list[ast.expr] = []
        for statement in self.scopes.bindings(node):
            if isinstance(statement, ast.arg):
                values.extend(self._passed_values(statement))
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    values.extend(_values_for(target, statement.value, node.id))
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                values.extend(_values_for(statement.target, statement.value, node.id))
        return values

    def _passed_values(self, parameter: ast.arg) -> list[ast.expr]:
        """What the file passes for a parameter of one of its plain functions, at every call
        (``train(model, SGD(...))``); nothing when a call passes it by ``*``/``**``."""
        function = self.nav.parent(self.nav.parent(parameter) or parameter)
        if not isinstance(function, FUNCTIONS) or parameter is function.args.vararg:
            return []
        if self.nav.enclosing(function, (ast.ClassDef,)) is not None:
            return []  # a method: its callers are not found by name
        positional = [*function.args.posonlyargs, *function.args.args]
        index = next((i for i, a in enumerate(positional) if a is parameter), None)
        if id(function) not in self._callers:
            self._callers[id(function)] = [
                c
                for c in self.collected.calls
                if isinstance(c.func, ast.Name)
                and c.func.id == function.name
                and self.defined_here(c.func) is function
            ]
        values: list[ast.expr] = []
        for call in self._callers[id(function)]:
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            ):
                return []
            if index is not None and index < len(call.args):
                values.append(call.args[index])
                continue
            keyword = next((k for k in call.keywords if k.arg == parameter.arg), None)
            if keyword is not None:
                values.append(keyword.value)
        return values


def _parameter_owners(node: ast.AST) -> set[str]:
    """``X`` of every ``X.parameters()``/``X.named_parameters()`` in ``node``."""
    return {
        owner
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("parameters", "named_parameters")
        and (owner := dotted(n.func.value)) is not None
    }


def _flat_targets(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [e.value if isinstance(e, ast.Starred) else e for e in target.elts]
    return [target]


def _values_for(target: ast.expr, value: ast.expr, name: str) -> list[ast.expr]:
    """What ``name`` gets from ``target = value``; ``a, b = f(a, b)`` maps argument by position
    (``accelerator.prepare``, ``fabric.setup`` return what they were given, in order)."""
    if dotted(target) == name and not isinstance(target, ast.Subscript):
        return [value]
    if isinstance(target, (ast.Tuple, ast.List)):
        for i, element in enumerate(target.elts):
            element = element.value if isinstance(element, ast.Starred) else element
            if dotted(element) != name:
                continue
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
                item = value.elts[i]
                return [item.value if isinstance(item, ast.Starred) else item]
            if isinstance(value, ast.Call):
                plain = [a for a in value.args if not isinstance(a, ast.Starred)]
                if len(plain) == len(target.elts):
                    return [plain[i]]
    return []
