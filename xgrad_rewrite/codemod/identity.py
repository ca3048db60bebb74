"""Is this expression an optimizer? Decided by data flow, never by its name (design.md).

An expression is an *optimizer* when it was built from a ``torch.optim`` class (any import alias,
resolved through libcst's ScopeProvider), or the script uses it as one (passes it to an LR
scheduler, reads its ``param_groups``, hands it to ``scaler.step``/``scaler.unscale_``). It is
*not* one when it was built by something known to return something else (an LR scheduler, a
``GradScaler``, ``argparse``, ``gym.make``, an EMA helper). Anything else is *unknown*: a function
parameter, ``self.optimizer = optimizer``, ``model.configure_optimizers(...)``; the finder accepts
an unknown only when it is what gets ``.step()``-ped next to a backward.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import libcst as cst
from libcst.metadata import Assignment, Scope

from xgrad_rewrite.codemod import known_optimizers as known
from xgrad_rewrite.codemod.blocks import Navigator
from xgrad_rewrite.codemod.collect import Collected
from xgrad_rewrite.codemod.dataflow import callee_name, dotted

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

    def __init__(
        self,
        collected: Collected,
        nav: Navigator,
        scopes: Mapping[cst.CSTNode, Scope | None],
    ) -> None:
        self.collected = collected
        self.nav = nav
        self._self_assigns: dict[int, dict[str, list[cst.CSTNode]]] = {}
        self.scopes = scopes
        self.evidence: set[tuple[int, str]] = set()
        self._collect_evidence()

    # -- keys: a dotted name within the function (or class, for self.*) it lives in -------------
    def key(self, node: cst.CSTNode) -> tuple[int, str] | None:
        name = dotted(node)
        if name is None:
            return None
        if name.startswith("self."):
            owner = self.nav.enclosing(node, (cst.ClassDef, cst.Module))
        else:
            owner = self.nav.scope_owner(node)
        return (id(owner), name)

    def qualified_names(self, node: cst.CSTNode) -> set[str]:
        scope = _value(self.scopes.get(node))
        if scope is None:
            return set()
        return {q.name for q in scope.get_qualified_names_for(node)}

    def _collect_evidence(self) -> None:
        """Uses that only an optimizer has."""
        for node in self.collected.attributes:
            if node.attr.value == "param_groups":
                self._note(node.value)
        for call in self.collected.calls:
            name = callee_name(call)
            if name == "unscale_" and call.args:
                self._note(call.args[0].value)
            elif self._is_scheduler_call(call):
                for arg in call.args:
                    if arg.keyword is None or arg.keyword.value == "optimizer":
                        self._note(arg.value)
                        break

    def _note(self, node: cst.CSTNode) -> None:
        key = self.key(node)
        if key is not None:
            self.evidence.add(key)

    def _is_scheduler_call(self, call: cst.Call) -> bool:
        qualified = self.qualified_names(call.func)
        if any(q.startswith("torch.optim.lr_scheduler.") for q in qualified):
            return True
        name = callee_name(call) or ""
        return "schedul" in name.lower() or "get_linear_schedule" in name or name.endswith("LR")

    def is_grad_scaler(self, node: cst.CSTNode) -> bool:
        name = dotted(node) or ""
        if "scaler" in name.rsplit(".", 1)[-1].lower():
            return True
        return any(self._value_is(v, known.GRAD_SCALERS) for v in self._assigned_values(node))

    def _value_is(self, value: cst.CSTNode, names: frozenset[str]) -> bool:
        return isinstance(value, cst.Call) and bool(self.qualified_names(value.func) & names)

    # -- classification --------------------------------------------------------------------
    def classify(self, node: cst.CSTNode, depth: int = 0) -> Identity:
        found = [self.classify_value(v, depth) for v in self._assigned_values(node)]
        for identity in found:
            if identity.kind == "optimizer":
                return identity
        key = self.key(node)
        if key is not None and key in self.evidence:
            return Identity("optimizer")
        if found and all(i.kind == "not" for i in found):
            return NOT
        return UNKNOWN

    def classify_value(self, value: cst.CSTNode, depth: int = 0) -> Identity:
        if depth > _MAX_DEPTH:
            return UNKNOWN
        if isinstance(value, (cst.Name, cst.Attribute)):
            return self.classify(value, depth + 1)
        if not isinstance(value, cst.Call):
            return UNKNOWN
        for name in self.qualified_names(value.func):
            cls = known.optimizer_class(name)
            if cls is not None:
                return Identity("optimizer", cls)
            if name in known.NOT_OPTIMIZER_CALLS or name.startswith(known.NOT_OPTIMIZER_MODULES):
                return NOT
        if self._is_scheduler_call(value) or _NOT_BY_NAME.search(callee_name(value) or ""):
            return NOT
        return UNKNOWN

    def _assigned_values(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        """Right-hand sides bound to this name (tuple unpacking mapped element by element)."""
        if isinstance(node, cst.Name):
            return self._name_values(node)
        name = dotted(node)
        if name is not None and name.startswith("self.") and isinstance(node, cst.Attribute):
            cls = self.nav.enclosing(node, (cst.ClassDef,))
            if cls is None:
                return []
            return self._class_assigns(cls).get(name, [])
        return []

    def _class_assigns(self, cls: cst.CSTNode) -> dict[str, list[cst.CSTNode]]:
        """``self.x = value`` assignments anywhere in a class, by ``self.x``."""
        if id(cls) not in self._self_assigns:
            table: dict[str, list[cst.CSTNode]] = {}
            for assign in self.collected.assigns:
                if self.nav.enclosing(assign, (cst.ClassDef,)) is not cls:
                    continue
                for target in assign.targets:
                    for element in _flat_targets(target.target):
                        name = dotted(element)
                        if name and name.startswith("self.") and isinstance(element, cst.Attribute):
                            table.setdefault(name, []).extend(
                                _values_for(target.target, assign.value, name)
                            )
            self._self_assigns[id(cls)] = table
        return self._self_assigns[id(cls)]

    def _name_values(self, node: cst.Name) -> list[cst.CSTNode]:
        scope = _value(self.scopes.get(node))
        if scope is None:
            return []
        values: list[cst.CSTNode] = []
        for assignment in scope[node.value]:
            if not isinstance(assignment, Assignment):
                continue
            target = assignment.node
            if not isinstance(target, cst.Name):
                continue  # a parameter, an import, a def: nothing to read
            stmt = self.nav.enclosing(target, (cst.Assign, cst.AnnAssign, cst.BaseStatement))
            if isinstance(stmt, cst.Assign):
                for t in stmt.targets:
                    values.extend(_values_for(t.target, stmt.value, node.value))
            elif isinstance(stmt, cst.AnnAssign) and stmt.value is not None:
                values.extend(_values_for(stmt.target, stmt.value, node.value))
        return values


def _value(meta: object) -> Any:
    """A metadata value; some providers hand out lazy values to be called on first use."""
    return meta() if callable(meta) and not isinstance(meta, Scope) else meta


def _flat_targets(target: cst.CSTNode) -> list[cst.CSTNode]:
    if isinstance(target, (cst.Tuple, cst.List)):
        return [e.value for e in target.elements]
    return [target]


def _values_for(target: cst.CSTNode, value: cst.CSTNode, name: str) -> list[cst.CSTNode]:
    """What ``name`` gets from ``target = value``; ``a, b = f(a, b)`` maps argument by position
    (``accelerator.prepare``, ``fabric.setup`` return what they were given, in order)."""
    if dotted(target) == name and not isinstance(target, cst.Subscript):
        return [value]
    if isinstance(target, (cst.Tuple, cst.List)):
        for i, element in enumerate(target.elements):
            if dotted(element.value) != name:
                continue
            if isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(
                target.elements
            ):
                return [value.elements[i].value]
            if isinstance(value, cst.Call):
                positional = [a for a in value.args if a.keyword is None and not a.star]
                if len(positional) == len(target.elements):
                    return [positional[i].value]
    return []
