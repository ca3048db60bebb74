"""Patch: insert statements at :class:`~.blocks.Slot` positions, keeping every other byte.

An inserted line takes over the blank lines and comments that sat above the statement it
precedes (so a call lands right above the statement, under its comment); revert hands them back,
which makes patch and revert exact inverses. Inline slots (``a(); b()``) insert ``call; ``.
"""

from __future__ import annotations

from collections import defaultdict

import libcst as cst

from xgrad_rewrite.codemod.analysis.calls import Insertion
from xgrad_rewrite.codemod.edit.cstmap import Location

_SEMICOLON = cst.Semicolon(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(" ")
)


def _small(code: str) -> cst.BaseSmallStatement:
    statement = cst.parse_statement(code + "\n")
    assert isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1
    return statement.body[0]


class _Patcher(cst.CSTTransformer):
    def __init__(self, insertions: list[Insertion], locations: dict[int, Location]) -> None:
        super().__init__()
        self.before: dict[int, list[Insertion]] = defaultdict(list)
        self.after: dict[int, list[Insertion]] = defaultdict(list)
        self.inline: dict[int, list[tuple[int, Insertion]]] = defaultdict(list)
        for insertion in insertions:
            slot = insertion.slot
            line, small = locations[id(slot.item)]
            if slot.after:
                self.after[id(line)].append(insertion)
            elif small or isinstance(line, cst.SimpleStatementSuite):
                self.inline[id(line)].append((small or 0, insertion))
            else:
                self.before[id(line)].append(insertion)

    def _inline(self, original, updated):  # type: ignore[no-untyped-def]
        insertions = self.inline.get(id(original))
        if not insertions:
            return updated
        body: list[cst.BaseSmallStatement] = []
        for index, statement in enumerate(updated.body):
            for small, insertion in insertions:
                if small == index:
                    body.append(_small(insertion.code).with_changes(semicolon=_SEMICOLON))
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
                body.append(line)
            body.append(new)
            for insertion in self.after.get(id(old), ()):
                body.append(cst.SimpleStatementLine(body=[_small(insertion.code)]))
        return updated.with_changes(body=body)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return self._block(original_node, updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return self._block(original_node, updated_node)


def apply(
    module: cst.Module, insertions: list[Insertion], locations: dict[int, Location]
) -> cst.Module:
    """``module`` with every insertion made; ``locations`` (from :func:`.cstmap.locate`) says
    where each slot's ast statement is in ``module``."""
    return module.visit(_Patcher(insertions, locations))
