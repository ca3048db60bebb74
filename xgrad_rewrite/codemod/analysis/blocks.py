"""Statement lists as the analysis sees them: blocks of statements, where calls can go.

The analysis runs on the standard library's :mod:`ast` (parsing and walking it costs a small
fraction of libcst's metadata passes, which is what keeps ``--check`` fast); libcst is used only
to make the edit (:mod:`.cstmap`, :mod:`.patch`). A *block* is one statement list of the tree
(``Module.body``, ``If.orelse``, an ``except`` handler's body...), named by its owner node and
field. An *item* is one statement of a block: ``a(); b()`` on one line are two items, so
``loss.backward(); optimizer.step()`` offers a slot between them. A :class:`Slot` says where an
inserted call goes.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

Block = tuple[ast.AST, str]  # (owner, field): (module, "body"), (if_node, "orelse"), ...


@dataclass(frozen=True, eq=False)
class Slot:
    """Insert before ``item`` (inline with ``;`` when it does not start its line), or, with
    ``after=True``, on a new line after the physical line(s) ``item`` ends."""

    item: ast.stmt
    after: bool = False

    def key(self) -> tuple[int, bool]:
        return (id(self.item), self.after)


def items_of(block: Block) -> list[ast.stmt]:
    owner, field = block
    return getattr(owner, field)


def line_end(item: ast.stmt, block: Block) -> int:
    """The last line of ``item`` and of whatever follows it on that line (``a = 1; b = 2``):
    where a line inserted after ``item`` goes."""
    items = items_of(block)
    index = next(i for i, it in enumerate(items) if it is item)
    end = item.end_lineno or item.lineno
    while index + 1 < len(items) and items[index + 1].lineno == end:
        index += 1
        end = items[index].end_lineno or end
    return end


def is_module(block: Block) -> bool:
    return isinstance(block[0], ast.Module)


class Navigator:
    """Answers "which statement holds this node", "which block holds this statement" and
    "what encloses this node" from the parent map of :mod:`.collect`."""

    def __init__(
        self, parents: Mapping[ast.AST, ast.AST], blocks: Mapping[ast.stmt, Block]
    ) -> None:
        self.parents = parents
        self.blocks = blocks

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(node)

    def item_of(self, node: ast.AST) -> tuple[ast.stmt, Block] | None:
        """The innermost statement containing ``node`` (or ``node`` itself) and its block."""
        current: ast.AST | None = node
        while current is not None:
            if isinstance(current, ast.stmt):
                return current, self.blocks[current]
            current = self.parent(current)
        return None

    def owner_item(self, block: Block) -> tuple[ast.stmt, Block] | None:
        """The statement a block belongs to (``if``, ``for``, ``try``...); None for the module."""
        owner = block[0]
        return None if isinstance(owner, ast.Module) else self.item_of(owner)

    def enclosing(self, node: ast.AST, kinds: tuple[type, ...]) -> ast.AST | None:
        """The nearest strict ancestor of one of ``kinds``."""
        parent = self.parent(node)
        while parent is not None and not isinstance(parent, kinds):
            parent = self.parent(parent)
        return parent

    def scope_owner(self, node: ast.AST) -> ast.AST:
        """The function (or lambda) whose body holds ``node``; the module at top level."""
        owner = self.enclosing(node, SCOPES)
        assert owner is not None
        return owner

    def ancestors(self, node: ast.AST) -> list[ast.AST]:
        out = []
        parent = self.parent(node)
        while parent is not None:
            out.append(parent)
            parent = self.parent(parent)
        return out


FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
SCOPES = (*FUNCTIONS, ast.Lambda, ast.Module)
