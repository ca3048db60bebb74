"""Is a patched file already exactly what the codemod would make of it? Answered on the ast.

A fresh clone's ``xgrad-rewrite --check`` (CI, a new machine) meets patched files with no cache
entry. The full answer removes the earlier calls with libcst and puts them back; this module
gives the same answer from the stdlib ast alone, for the case that matters (the file is in the
target state), by checking that the calls present are exactly the ones the analysis plans, each
on the line, with the text and next to the statement, where :mod:`.patch` would put it. Any
doubt (a call moved, reformatted, missing or extra; a shape it does not check) returns None and
the caller takes the full libcst path, so a wrong "unchanged" would need this check to accept a
layout the patcher would not produce; ``tests/codemod/test_inplace.py`` compares the two on every
fixture and on perturbed copies of them.
"""

from __future__ import annotations

import ast
import re
from collections import Counter

from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Slot, line_end
from xgrad_rewrite.codemod.analysis.calls import Insertion, plan_calls
from xgrad_rewrite.codemod.analysis.collect import collect
from xgrad_rewrite.codemod.analysis.find import Finder
from xgrad_rewrite.codemod.analysis.imports import our_imports
from xgrad_rewrite.codemod.analysis.lines import report
from xgrad_rewrite.codemod.analysis.positions import Positions
from xgrad_rewrite.codemod.api import Options, Result

_NEWLINE = re.compile(r"\r\n|\r|\n")


def in_place(source: str, options: Options) -> Result | None:
    """``Result(source, changed=False, ...)`` when the file is certainly in the target state."""
    tree = ast.parse(source)  # its own tree: the calls are taken out of it below
    positions = Positions(source)
    imports = our_imports(tree, positions)
    aliases = set(imports.values())
    if not imports or source.count(inserted.RUNTIME_MODULE) != len(imports):
        return None
    present = _take_calls(tree, aliases, positions)
    if present is None:
        return None
    tree.body = [s for s in tree.body if s not in imports]
    used = collect(tree).names & aliases
    kept = [s for s, alias in imports.items() if alias in used]
    dropped = [s for s in imports if s not in kept]
    tree.body = sorted([*tree.body, *kept], key=lambda s: s.lineno)
    if not tree.body:
        return None

    finder = Finder(tree, source)
    planned = plan_calls(finder, options)
    wanted = Counter((i.kind, i.optimizer) for i in planned.calls)
    if wanted != Counter(kind for kind, _ in present.values()):
        return None
    check = _Layout(source, positions, finder, present)
    if not all(check.group(slot, calls) for slot, calls in _groups(planned.calls)):
        return None
    if len(check.claimed) != len(present):
        return None
    insertions = planned.insertions(tree)
    expected = insertions[0] if planned.calls and planned.needs_import else None
    if not check.import_line(expected, dropped):
        return None
    diagnostics, steps = report(finder, planned, check, [])
    return Result(source, False, diagnostics, steps)


def _take_calls(
    tree: ast.Module, aliases: set[str], positions: Positions
) -> dict[int, tuple[tuple[str, str], ast.stmt]] | None:
    """Remove the codemod's calls from every block; id -> ((kind, optimizer), statement). None
    when a block would be left empty (revert would write ``pass`` there)."""
    present: dict[int, tuple[tuple[str, str], ast.stmt]] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list) or not block or not isinstance(block[0], ast.stmt):
                continue
            kept = []
            for statement in block:
                found = inserted.inserted_call(statement, aliases, positions.segment)
                if found is None:
                    kept.append(statement)
                else:
                    present[id(statement)] = (found, statement)
            if not kept:
                return None
            setattr(node, field, kept)
    return present


def _groups(calls: list[Insertion]) -> list[tuple[Slot, list[Insertion]]]:
    """Calls by slot, in the order :mod:`.patch` writes them."""
    groups: dict[tuple[int, bool], tuple[Slot, list[Insertion]]] = {}
    for call in calls:
        groups.setdefault(call.slot.key(), (call.slot, []))[1].append(call)
    return list(groups.values())


class _Layout:
    """Checks call positions against the source, claiming each present call at most once, and
    remembers where each slot's calls are (the :class:`~.lines.Lines` of an unchanged file)."""

    def __init__(
        self,
        source: str,
        positions: Positions,
        finder: Finder,
        present: dict[int, tuple[tuple[str, str], ast.stmt]],
    ) -> None:
        self.positions = positions
        self.lines = positions.lines
        self.finder = finder
        newline = _NEWLINE.search(source)
        self.newline = newline.group() if newline else "\n"
        self.present = [s for _, s in present.values() if s.lineno == s.end_lineno]
        self.by_line = {s.lineno: s for s in self.present}  # one per line when alone on it
        self.kinds = {id(s): kind for kind, s in present.values()}
        self.claimed: set[int] = set()
        self.at: dict[tuple[int, bool], int] = {}

    # -- Lines protocol: the file is returned as it is --------------------------------------
    def out(self, line: int) -> int:
        return line

    def inserted(self, slot: Slot | None) -> int | None:
        return None if slot is None else self.at.get(slot.key())

    # -- checks -------------------------------------------------------------------------------
    def _claim_line(self, line: int, call: Insertion, indent: str) -> bool:
        statement = self.by_line.get(line)
        if statement is None or id(statement) in self.claimed:
            return False
        if self.lines[line - 1] != indent + call.code + self.newline:
            return False
        if self.kinds[id(statement)] != (call.kind, call.optimizer):
            return False
        self.claimed.add(id(statement))
        return True

    def group(self, slot: Slot, calls: list[Insertion]) -> bool:
        item = slot.item
        if getattr(item, "decorator_list", None) or isinstance(item, (*FUNCTIONS, ast.ClassDef)):
            return False
        text = self.lines[item.lineno - 1]
        column = self.positions.column(item.lineno, item.col_offset)
        indent = text[: len(text) - len(text.lstrip(" \t\f"))]
        if slot.after:
            if not isinstance(item, (ast.Assign, ast.AnnAssign, ast.Expr, ast.Import)):
                return False
            first = line_end(item, self.finder.nav.blocks[item]) + 1
            lines = range(first, first + len(calls))
            self.at[slot.key()] = first
            return all(self._claim_line(n, c, indent) for n, c in zip(lines, calls, strict=True))
        before = text[:column]
        if not before.strip():
            first = item.lineno - len(calls)
            self.at[slot.key()] = first
            lines = range(first, item.lineno)
            return all(self._claim_line(n, c, indent) for n, c in zip(lines, calls, strict=True))
        return self._inline(slot, calls, before)

    def _inline(self, slot: Slot, calls: list[Insertion], before: str) -> bool:
        prefix = "".join(f"{c.code}; " for c in calls)
        if not before.endswith(prefix) or not before[: len(before) - len(prefix)].strip():
            return False
        line = slot.item.lineno
        column = len(before) - len(prefix)
        on_line = {
            self.positions.column(line, s.col_offset): s for s in self.present if s.lineno == line
        }
        for call in calls:
            statement = on_line.get(column)
            if statement is None or id(statement) in self.claimed:
                return False
            if self.kinds[id(statement)] != (call.kind, call.optimizer):
                return False
            self.claimed.add(id(statement))
            column += len(call.code) + 2
        self.at[slot.key()] = line
        return True

    def import_line(self, expected: Insertion | None, dropped: list[ast.stmt]) -> bool:
        """The import the codemod would add is there (or none is, when it would add none)."""
        if expected is None:
            return not dropped
        if len(dropped) != 1:
            return False
        statement = dropped[0]
        if self.lines[statement.lineno - 1] != expected.code + self.newline:
            return False
        slot = expected.slot
        if slot.after:
            line = line_end(slot.item, self.finder.nav.blocks[slot.item]) + 1
        elif expected.take_leading:
            line = slot.item.lineno - 1
        else:
            return False
        self.at[slot.key()] = line
        return statement.lineno == line
