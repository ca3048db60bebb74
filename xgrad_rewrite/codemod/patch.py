"""Patch: insert statements at :class:`~.blocks.Slot` positions, keeping every other byte.

An inserted line takes over the blank lines and comments that sat above the statement it
precedes (so a call lands right above the statement, under its comment); revert hands them back,
which makes patch and revert exact inverses. Inline slots (``a(); b()``) insert ``call; ``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import libcst as cst

from xgrad_rewrite.codemod.blocks import Slot

_SEMICOLON = cst.Semicolon(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(" ")
)


def format_s(s: float) -> str:
    """``2`` for 2.0, ``0.5`` for 0.5: the number as a user would write it."""
    value = float(s)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(eq=False)
class Insertion:
    """``code`` (one simple statement, no newline) at ``slot``; ``take_leading`` moves the
    target's leading blank lines/comments above the inserted line."""

    slot: Slot
    code: str
    take_leading: bool = True
    node: cst.CSTNode | None = None  # the node put into the tree, for positions afterwards


def _small(code: str) -> cst.BaseSmallStatement:
    statement = cst.parse_statement(code + "\n")
    assert isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
    return statement.body[0]


class _Patcher(cst.CSTTransformer):
    def __init__(self, insertions: list[Insertion]) -> None:
        super().__init__()
        self.before: dict[int, list[Insertion]] = defaultdict(list)
        self.after: dict[int, list[Insertion]] = defaultdict(list)
        self.inline: dict[int, list[Insertion]] = defaultdict(list)
        for insertion in insertions:
            slot = insertion.slot
            if slot.after:
                self.after[id(slot.item.line)].append(insertion)
            elif slot.inline:
                self.inline[id(slot.item.line)].append(insertion)
            else:
                self.before[id(slot.item.line)].append(insertion)

    def _inline(self, original, updated):  # type: ignore[no-untyped-def]
        insertions = self.inline.get(id(original))
        if not insertions:
            return updated
        body: list[cst.BaseSmallStatement] = []
        for index, statement in enumerate(updated.body):
            for insertion in insertions:
                if insertion.slot.item.small == index:
                    node = _small(insertion.code).with_changes(semicolon=_SEMICOLON)
                    insertion.node = node
                    body.append(node)
            body.append(statement)
        return updated.with_changes(body=body)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        return self._inline(original_node, updated_node)

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        return self._inline(original_node, updated_node)

    def _block(self, original, updated):  # type: ignore[no-untyped-def]
        body: list[cst.BaseStatement] = []
        for old, new in zip(original.body, updated.body, strict=True):
            for insertion in self.before.get(id(old), ()):
                line = cst.SimpleStatementLine(body=[_small(insertion.code)])
                if insertion.take_leading and new.leading_lines:
                    line = line.with_changes(leading_lines=new.leading_lines)
                    new = new.with_changes(leading_lines=())
                insertion.node = line
                body.append(line)
            body.append(new)
            for insertion in self.after.get(id(old), ()):
                line = cst.SimpleStatementLine(body=[_small(insertion.code)])
                insertion.node = line
                body.append(line)
        return updated.with_changes(body=body)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return self._block(original_node, updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return self._block(original_node, updated_node)


def apply(module: cst.Module, insertions: list[Insertion]) -> cst.Module:
    """``module`` with every insertion made (each ``Insertion.node`` set to what was inserted)."""
    return module.visit(_Patcher(insertions))
