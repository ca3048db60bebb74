"""Which statements bind a name where it is read, and what an imported name stands for.

A small version of what libcst's ScopeProvider answered (at a tenth of its cost): scopes are
the module, functions, lambdas and classes; a name read in a function is looked up in that
function if it binds the name there, else in the enclosing functions, else in the module
(class bodies are skipped, as Python does). Only the questions the analysis asks are answered:
the ``x = ...`` statements a name gets its value from, and ``optim.Adam`` ->
``torch.optim.Adam`` through ``import``/``from ... import`` aliases.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Mapping

from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS

_SCOPES = (*FUNCTIONS, ast.Lambda, ast.ClassDef, ast.Module)


class Scopes:
    def __init__(self, tree: ast.Module, parents: Mapping[ast.AST, ast.AST]) -> None:
        self.parents = parents
        self._module = tree
        # scope -> name -> what binds it there: the statement of an assignment target, an
        # `arg`, an import `alias`, a `def`/`class`, an `except ... as` handler
        self.bound: dict[ast.AST, dict[str, list[ast.AST]]] = defaultdict(lambda: defaultdict(list))
        self.imports: dict[int, str] = {}  # id(alias node) -> the module path it names
        self.globals: dict[ast.AST, set[str]] = defaultdict(set)
        self._bind_all(tree)

    # -- building -------------------------------------------------------------------------
    def scope_of(self, node: ast.AST) -> ast.AST:
        """The scope a node is *in* (a function's own name and defaults are in the outer one)."""
        child, parent = node, self.parents.get(node)
        while parent is not None:
            if isinstance(parent, _SCOPES) and _inside(child, parent):
                return parent
            child, parent = parent, self.parents.get(parent)
        return child

    def _bind(self, node: ast.AST, name: str, binder: ast.AST) -> None:
        scope = self.scope_of(node)
        if name in self.globals[scope]:
            scope = self._module
        self.bound[scope][name].append(binder)

    def _bind_all(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                self.globals[self.scope_of(node)].update(node.names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                statement = self._statement(node)
                if statement is not None:
                    self._bind(node, node.id, statement)
            elif isinstance(node, (*FUNCTIONS, ast.ClassDef)):
                self._bind(node, node.name, node)
            elif isinstance(node, ast.arg):
                self._bind(node, node.arg, node)
            elif isinstance(node, ast.alias):
                bound = node.asname or node.name.split(".", 1)[0]
                self._bind(node, bound, node)
                statement = self.parents[node]
                if isinstance(statement, ast.ImportFrom):
                    if statement.level == 0 and statement.module and node.name != "*":
                        self.imports[id(node)] = f"{statement.module}.{node.name}"
                else:
                    self.imports[id(node)] = node.name if node.asname else bound
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self._bind(node, node.name, node)

    def _statement(self, node: ast.AST) -> ast.AST | None:
        """The statement a target belongs to; None inside a comprehension (its own scope)."""
        while not isinstance(node, ast.stmt):
            if isinstance(node, ast.comprehension):
                return None
            node = self.parents[node]
        return node

    # -- questions ------------------------------------------------------------------------
    def bindings(self, name: ast.Name) -> list[ast.AST]:
        """What binds ``name`` where it is read: statements (``Assign``...), ``arg``s, imports."""
        scope: ast.AST | None = self.scope_of(name)
        first = True
        while scope is not None:
            table = self.bound.get(scope)
            if (first or not isinstance(scope, ast.ClassDef)) and table and name.id in table:
                return table[name.id]
            if name.id in self.globals.get(scope, ()) and scope is not self._module:
                scope = self._module
                continue
            first = False
            scope = None if isinstance(scope, ast.Module) else self.scope_of(scope)
        return []

    def qualified_names(self, node: ast.AST) -> set[str]:
        """``{"torch.optim.Adam"}`` for ``optim.Adam`` after ``import torch.optim as optim``."""
        name = dotted_chain(node)
        if name is None:
            return set()
        head, _, rest = name.partition(".")
        anchor = node
        while isinstance(anchor, ast.Attribute):
            anchor = anchor.value
        assert isinstance(anchor, ast.Name)
        out = set()
        for binder in self.bindings(anchor):
            module = self.imports.get(id(binder))
            if module is not None:
                out.add(f"{module}.{rest}" if rest else module)
        return out


def dotted_chain(node: ast.AST) -> str | None:
    """``a.b.c`` for a pure Name/Attribute chain (no subscripts), else None."""
    if isinstance(node, ast.Attribute):
        base = dotted_chain(node.value)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return None


def _inside(child: ast.AST, scope: ast.AST) -> bool:
    """Whether ``child`` (a direct child of ``scope``) is in the scope's own namespace: a
    function's body and arguments are, its decorators, defaults and annotations are not."""
    if isinstance(scope, ast.Module):
        return True
    if isinstance(scope, ast.Lambda):
        return child is scope.body or child is scope.args
    if isinstance(scope, ast.ClassDef):
        return child in scope.body
    if isinstance(scope, FUNCTIONS):
        return child in scope.body or child is scope.args
    return False
