"""Is a name bound on every path that reaches a statement? (Where ``predict(opt)`` may go.)

An inserted ``xgrad.predict(optimizer, s=1)`` evaluates ``optimizer`` where it is inserted, which
is earlier than the step that names it. If the script binds ``optimizer`` only under a condition
(``if args.use_optimizer: optimizer = ...``) or in a loop after the forward (``for o in
optimizers: o.step()``), the inserted line would raise ``NameError`` where the original ran. This
module answers conservatively: "yes" only when a binding certainly runs first.

Within a function, a name is bound at a statement when an earlier statement of an enclosing
block binds it unconditionally (an assignment, an import, a ``def``/``class``, a ``with ... as``;
an ``if`` whose every branch binds it; the target of the ``for`` whose body holds the statement),
or it is a parameter. A name the function reads from outside (a global, a closure variable) is
bound when the defining scope binds it at its own top level (the function is called after that,
in the scripts this tool sees); a name bound nowhere in the file (a builtin, a star import) is
taken as bound, since the original script reads it at the step too. At module level, the order
of statements decides.
"""

from __future__ import annotations

import ast

from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Block, Navigator, items_of
from xgrad_rewrite.codemod.analysis.scopes import Scopes


def names_read(expr: ast.AST) -> list[str]:
    """The root names an expression evaluates (``self`` for ``self.opt``, ``opts`` and ``i`` for
    ``opts[i]``)."""
    return sorted({n.id for n in ast.walk(expr) if isinstance(n, ast.Name)})


class Bindings:
    def __init__(self, nav: Navigator, scopes: Scopes) -> None:
        self.nav = nav
        self.scopes = scopes

    def unbound(self, expr: ast.AST, item: ast.stmt) -> str | None:
        """The first name of ``expr`` that may be unbound at ``item`` (``self.x`` included),
        else None."""
        name = next((n for n in names_read(expr) if not self.bound_at(n, item)), None)
        if name is not None:
            return name
        for node in ast.walk(expr):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and not self._attribute_set(node.attr, item)
            ):
                return f"self.{node.attr}"
        return None

    def _attribute_set(self, attr: str, item: ast.stmt) -> bool:
        """``self.attr`` is set by the time ``item`` runs: some method of the class sets it at
        the top level of its body (``__init__``, a ``setup`` called first), not only under a
        condition (``if self.use_opt: self.optimizer = ...``)."""
        cls = self.nav.enclosing(item, (ast.ClassDef,))
        if not isinstance(cls, ast.ClassDef):
            return True  # not a method: nothing to say about this `self`
        assigned = False
        for method in cls.body:
            if not isinstance(method, FUNCTIONS):
                continue
            for node in ast.walk(method):
                targets = _attribute_targets(node)
                if not any(_is_self_attribute(t, attr) for t in targets):
                    continue
                assigned = True
                if node in method.body or (
                    isinstance(node, ast.stmt) and self._unconditional_in(node, method)
                ):
                    return True
        return not assigned  # set nowhere here: a base class or the caller sets it

    def bound_at(self, name: str, item: ast.stmt) -> bool:
        current: ast.stmt = item
        block: Block = self.nav.blocks[item]
        while True:
            items = items_of(block)
            index = next(i for i, it in enumerate(items) if it is current)
            if any(binds(earlier, name) for earlier in items[:index]):
                return True
            owner = block[0]
            if isinstance(owner, ast.Module):
                return not self.scopes.bound[owner].get(name)  # bound nowhere: a builtin
            if isinstance(owner, FUNCTIONS):
                return self._function_reads(owner, name)
            if isinstance(owner, (ast.ClassDef, ast.Lambda)):
                return True
            if _binds_for_block(owner, block[1], name):
                return True
            up = self.nav.owner_item(block)
            if up is None:
                return False
            current, block = up

    def _unconditional_in(self, statement: ast.stmt, method: ast.AST) -> bool:
        """Whether ``statement`` runs whenever ``method`` runs to its end (only ``with`` blocks
        between them)."""
        current: ast.AST | None = self.nav.parent(statement)
        while current is not None and current is not method:
            if not isinstance(current, (ast.With, ast.AsyncWith)):
                return False
            current = self.nav.parent(current)
        return current is method

    def _function_reads(self, function: ast.AST, name: str) -> bool:
        """``name`` read in ``function`` before any local binding of it."""
        assert isinstance(function, FUNCTIONS)
        arguments = function.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        if any(a.arg == name for a in every):
            return True
        if self.scopes.bound[function].get(name):
            return False  # a local of this function, not bound before the statement
        scope = self.scopes.scope_of(function)
        while isinstance(scope, ast.ClassDef):
            scope = self.scopes.scope_of(scope)
        binders = self.scopes.bound[scope].get(name)
        if not binders:
            if isinstance(scope, ast.Module):
                return True  # bound nowhere in the file
            return self._function_reads(scope, name)
        body = scope.body if isinstance(scope, (ast.Module, *FUNCTIONS)) else []
        if isinstance(scope, FUNCTIONS) and any(a.arg == name for a in scope.args.args):
            return True
        return any(binds(statement, name) for statement in body)


def _attribute_targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [e for t in node.targets for e in _flat(t)]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and getattr(node, "value", None):
        return _flat(node.target)
    return []


def _flat(target: ast.expr) -> list[ast.expr]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [e for element in target.elts for e in _flat(element)]
    return [target.value if isinstance(target, ast.Starred) else target]


def _is_self_attribute(target: ast.expr, attr: str) -> bool:
    return (
        isinstance(target, ast.Attribute)
        and target.attr == attr
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    )


def binds(statement: ast.stmt, name: str) -> bool:
    """Whether running ``statement`` to its end certainly binds ``name``."""
    if isinstance(statement, ast.Assign):
        return any(_in_target(t, name) for t in statement.targets)
    if isinstance(statement, ast.AnnAssign):
        return statement.value is not None and _in_target(statement.target, name)
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return any((a.asname or a.name.split(".", 1)[0]) == name for a in statement.names)
    if isinstance(statement, (*FUNCTIONS, ast.ClassDef)):
        return statement.name == name
    if isinstance(statement, (ast.With, ast.AsyncWith)):
        if any(
            i.optional_vars is not None and _in_target(i.optional_vars, name)
            for i in statement.items
        ):
            return True
        return _all_bind(statement.body, name)
    if isinstance(statement, ast.If):
        if _is_main_guard(statement.test):
            return _all_bind(statement.body, name)
        return _all_bind(statement.body, name) and _all_bind(statement.orelse, name)
    if isinstance(statement, ast.Try):
        return _all_bind(statement.finalbody, name) or (
            _all_bind(statement.body, name)
            and all(_all_bind(h.body, name) for h in statement.handlers)
        )
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.NamedExpr):
        return _in_target(statement.value.target, name)
    return False


def _all_bind(statements: list[ast.stmt], name: str) -> bool:
    return any(binds(s, name) for s in statements)


def _binds_for_block(owner: ast.AST, field: str, name: str) -> bool:
    """What entering ``owner``'s ``field`` block binds: a ``for`` target in its body, a ``with``
    target, an ``except ... as`` name."""
    if isinstance(owner, (ast.For, ast.AsyncFor)) and field == "body":
        return _in_target(owner.target, name)
    if isinstance(owner, (ast.With, ast.AsyncWith)):
        return any(
            i.optional_vars is not None and _in_target(i.optional_vars, name) for i in owner.items
        )
    if isinstance(owner, ast.ExceptHandler):
        return owner.name == name
    return False


def _in_target(target: ast.AST, name: str) -> bool:
    if isinstance(target, ast.Name):
        return target.id == name
    if isinstance(target, (ast.Tuple, ast.List)):
        return any(_in_target(e, name) for e in target.elts)
    if isinstance(target, ast.Starred):
        return _in_target(target.value, name)
    return False


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``: the script's own entry point, which always runs."""
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )
