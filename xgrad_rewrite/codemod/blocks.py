"""Statement lists as the codemod sees them: blocks of items, where calls can be inserted.

A *block* is a ``Module`` or ``IndentedBlock`` body, or the small statements of a one-line
``SimpleStatementSuite`` (``if x: a(); b()``). An *item* is one statement of a block, with the
small statements of ``a(); b()`` counted separately, so ``loss.backward(); optimizer.step()``
offers a slot between them. A :class:`Slot` says where an inserted call goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libcst as cst

Block = cst.Module | cst.IndentedBlock | cst.SimpleStatementSuite
_BODY_HOLDERS = (cst.Module, cst.IndentedBlock)
_LINE_HOLDERS = (cst.SimpleStatementLine, cst.SimpleStatementSuite)


@dataclass(frozen=True, eq=False)
class Item:
    """One statement of a block: ``line`` is the node in the block's body (a statement line, a
    compound statement or a one-line suite); ``small`` the index of a small statement in it."""

    line: cst.CSTNode
    small: int | None
    node: cst.CSTNode

    def same(self, other: Item) -> bool:
        return self.line is other.line and self.small == other.small


@dataclass(frozen=True, eq=False)
class Slot:
    """Insert before ``item`` (on its own line when it starts a line, else inline with ``;``),
    or, with ``after=True``, on a new line after ``item.line``."""

    item: Item
    after: bool = False

    @property
    def inline(self) -> bool:
        if self.after:
            return False
        return isinstance(self.item.line, cst.SimpleStatementSuite) or bool(self.item.small)

    def key(self) -> tuple[int, int | None, bool]:
        return (id(self.item.line), self.item.small, self.after)


def items_of(block: Block) -> list[Item]:
    """The block's statements in order, small statements of one line counted separately."""
    if isinstance(block, cst.SimpleStatementSuite):
        return [Item(block, i, s) for i, s in enumerate(block.body)]
    out: list[Item] = []
    for stmt in block.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            out.extend(Item(stmt, i, s) for i, s in enumerate(stmt.body))
        else:
            out.append(Item(stmt, None, stmt))
    return out


class Navigator:
    """Answers "which item holds this node" and "which block holds this item" from the
    parent map of :mod:`.collect`."""

    def __init__(self, parents: Mapping[cst.CSTNode, cst.CSTNode]) -> None:
        self.parents = parents

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parents.get(node)

    def item_of(self, node: cst.CSTNode) -> tuple[Item, Block] | None:
        """The innermost item containing ``node`` and the block it belongs to."""
        child = node
        parent = self.parent(child)
        while parent is not None:
            if isinstance(parent, _LINE_HOLDERS) and isinstance(child, cst.BaseSmallStatement):
                index = next(i for i, s in enumerate(parent.body) if s is child)
                if isinstance(parent, cst.SimpleStatementSuite):
                    return Item(parent, index, child), parent
                block = self.parent(parent)
                assert isinstance(block, _BODY_HOLDERS)
                return Item(parent, index, child), block
            if isinstance(parent, _BODY_HOLDERS) and isinstance(child, cst.BaseCompoundStatement):
                return Item(child, None, child), parent
            child, parent = parent, self.parent(parent)
        return None

    def enclosing(self, node: cst.CSTNode, kinds: tuple[type, ...]) -> cst.CSTNode | None:
        """The nearest strict ancestor of one of ``kinds``."""
        parent = self.parent(node)
        while parent is not None and not isinstance(parent, kinds):
            parent = self.parent(parent)
        return parent

    def scope_owner(self, node: cst.CSTNode) -> cst.CSTNode:
        """The function (or lambda) whose body holds ``node``; the module at top level."""
        owner = self.enclosing(node, (cst.FunctionDef, cst.Lambda, cst.Module))
        assert owner is not None
        return owner

    def ancestors(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        out = []
        parent = self.parent(node)
        while parent is not None:
            out.append(parent)
            parent = self.parent(parent)
        return out
