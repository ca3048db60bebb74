"""Line numbers in the returned text: where the found steps are and where the calls went."""

from __future__ import annotations

import bisect
from typing import Protocol

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod.analysis.blocks import Slot, line_end
from xgrad_rewrite.codemod.analysis.calls import Insertion, Planned
from xgrad_rewrite.codemod.analysis.find import Finder
from xgrad_rewrite.codemod.api import Diagnostic, StepReport
from xgrad_rewrite.codemod.inserted import ALIAS


class Lines(Protocol):
    def out(self, line: int) -> int:
        """The line in the returned text of a line of the analysed one."""

    def inserted(self, slot: Slot | None) -> int | None:
        """The line of the call inserted at ``slot`` (None: no call there)."""


class LineMap:
    """Line numbers of the returned text from those of the parsed one: each inserted line
    shifts every line at or after its anchor down by one."""

    def __init__(self, finder: Finder, insertions: list[Insertion]) -> None:
        self.finder = finder
        self.insertions = insertions
        self._anchor_of = [self.anchor(i) for i in insertions]
        self.anchors: list[int] = sorted(a for a in self._anchor_of if a is not None)
        self._first: dict[tuple[int, bool], int] = {}  # slot key -> its first insertion
        self._rank: list[int] = []  # position among the insertions sharing its anchor
        seen: dict[int | None, int] = {}
        for index, (insertion, anchor) in enumerate(zip(insertions, self._anchor_of, strict=True)):
            self._first.setdefault(insertion.slot.key(), index)
            self._rank.append(seen.get(anchor, 0))
            seen[anchor] = seen.get(anchor, 0) + 1

    def anchor(self, insertion: Insertion) -> int | None:
        """The line the inserted line will have, before shifting; None for an inline call."""
        item = insertion.slot.item
        if insertion.slot.after:
            return line_end(item, self.finder.nav.blocks[item]) + 1
        if not self.finder.positions.starts_line(item):
            return None
        return item.lineno

    def out(self, line: int) -> int:
        return line + bisect.bisect_right(self.anchors, line)

    def inserted(self, slot: Slot | None) -> int | None:
        index = None if slot is None else self._first.get(slot.key())
        if index is None:
            return None
        insertion, anchor = self.insertions[index], self._anchor_of[index]
        if anchor is None:
            return self.out(self.finder.where(insertion.slot.item)[0])
        return anchor + bisect.bisect_left(self.anchors, anchor) + self._rank[index]


def report(
    finder: Finder, planned: Planned, lines: Lines, diagnostics: list[Diagnostic]
) -> tuple[tuple[Diagnostic, ...], tuple[StepReport, ...]]:
    """Every diagnostic (``diagnostics`` plus the plans' notes) and step, at its line in the
    returned text."""
    out = list(diagnostics)
    if planned.calls and planned.needs_import and planned.alias != ALIAS:
        line = lines.inserted(planned.import_slot) or 1
        message = codes.message(codes.NAME_TAKEN, taken=ALIAS, alias=planned.alias)
        out.append(codes.diagnostic(codes.NAME_TAKEN, line, 0, message))
    for plan in planned.plans:
        for note in plan.notes:
            line, column = finder.where(note.node)
            out.append(codes.diagnostic(note.code, lines.out(line), column, note.message))
    at_slot: dict[tuple[int, bool], list[tuple[str, str]]] = {}
    if planned.import_slot is not None:
        at_slot[planned.import_slot.key()] = [("import", "")]
    for call in planned.calls:
        at_slot.setdefault(call.slot.key(), []).append((call.kind, call.optimizer))

    def call_line(slot: Slot | None, kind: str, optimizer: str) -> int | None:
        """The line of this optimizer's call at ``slot``: the slot's calls are written one a
        line in plan order (all on one line when inline)."""
        first = lines.inserted(slot)
        if first is None or slot is None:
            return first
        if not slot.after and not finder.positions.starts_line(slot.item):
            return first
        group = at_slot.get(slot.key(), [])
        return first + (group.index((kind, optimizer)) if (kind, optimizer) in group else 0)

    steps = tuple(
        StepReport(
            optimizer=plan.optimizer,
            backward_line=lines.out(finder.where(plan.backward)[0]),
            step_line=lines.out(finder.where(plan.step)[0]),
            predict_line=call_line(plan.predict, "predict", plan.optimizer),
            restore_line=call_line(plan.restore, "restore", plan.optimizer),
        )
        for plan in planned.plans
        if plan.predict is not None or plan.restore is not None
    )
    out.sort(key=lambda d: (d.line, d.column, d.code))
    return tuple(out), steps
