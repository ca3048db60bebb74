"""``rewrite(source, options) -> Result``: parse, revert, find, patch (pure text to text).

Every run starts from the file with earlier insertions removed, then inserts afresh: that makes
a second run a no-op, a new ``s`` update the calls in place, and ``revert`` exact.
"""

from __future__ import annotations

import ast
import bisect
from collections import Counter
from dataclasses import replace

import libcst as cst

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result, StepReport
from xgrad_rewrite.codemod.blocks import Slot
from xgrad_rewrite.codemod.find import Finder, Plan, find
from xgrad_rewrite.codemod.fx_mode import find_fx
from xgrad_rewrite.codemod.imports import ALIAS, choose_alias, import_code, import_slot
from xgrad_rewrite.codemod.patch import Insertion, apply, format_s
from xgrad_rewrite.codemod.revert import revert


def parse(source: str) -> cst.Module:
    """libcst's tree, or :class:`ParseError` with the position Python itself reports."""
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        line, column = error.raw_line, error.raw_column
        try:
            ast.parse(source)
        except SyntaxError as syntax:
            line, column = syntax.lineno or line, max((syntax.offset or 1) - 1, 0)
        raise ParseError(error.message, line, column) from error


def rewrite(source: str, options: Options | None = None) -> Result:
    """``source`` with XGrad calls inserted (or removed, with ``options.revert``)."""
    options = options or Options()
    module, removed = revert(parse(source))
    if "XGradCallback" in source:
        from xgrad_rewrite.codemod.trainer_callback import add_trainer_callbacks

        module = add_trainer_callbacks(module, options.s, revert=True)[0]
    if options.revert:
        text = module.code
        return Result(text=text, changed=text != source)

    diagnostics: list[Diagnostic] = []
    if options.mode == "eager" and "Trainer" in source:
        # Frameworks that own their loop (transformers/Lightning Trainer) get a callback; imported
        # only here because it needs libcst.matchers, whose import alone takes about a second.
        from xgrad_rewrite.codemod.trainer_callback import add_trainer_callbacks

        module, trainer_diagnostics = add_trainer_callbacks(module, options.s, revert=False)
        diagnostics.extend(trainer_diagnostics)

    finder = Finder(module)
    alias, needs_import = choose_alias(module, finder.collected.names)
    s = format_s(options.s)
    insertions: list[Insertion] = []
    plans: list[Plan] = []
    kinds: dict[int, str] = {}
    if options.mode == "fx":
        for plan, model in find_fx(finder, options):
            plans.append(plan)
            if plan.predict is not None:
                code = f"{model} = {alias}.fx.predictive({model}, {plan.optimizer}, s={s})"
                insertions.append(Insertion(plan.predict, code))
    else:
        plans = find(finder, options)
        seen: set[tuple[object, str, str]] = set()
        for plan in plans:
            calls = []
            if plan.restore is not None:
                calls.append(("restore", plan.restore, f"{alias}.restore({plan.optimizer})"))
            if plan.predict is not None:
                code = f"{alias}.predict({plan.optimizer}, s={s})"
                calls.append(("predict", plan.predict, code))
            for kind, slot, code in calls:
                if (slot.key(), kind, plan.optimizer) in seen:
                    continue
                seen.add((slot.key(), kind, plan.optimizer))
                insertions.append(Insertion(slot, code))
                kinds[id(insertions[-1])] = kind
    insertions.sort(key=lambda i: 0 if kinds.get(id(i)) == "restore" else 1)

    unplaced = Counter(removed) - Counter(
        (kinds.get(id(i), "fx"), _optimizer_of(i.code)) for i in insertions
    )
    if unplaced:
        return _unplaced(source, unplaced, alias)

    if insertions and needs_import:
        slot, take_leading = import_slot(module)
        insertions.insert(0, Insertion(slot, import_code(alias), take_leading))

    text = apply(module, insertions).code if insertions else module.code
    lines = _LineMap(finder, insertions)
    diagnostics = [replace(d, line=lines.out(d.line)) for d in diagnostics]
    if insertions and needs_import and alias != ALIAS:
        line = lines.inserted(insertions[0].slot, insertions) or 1
        message = f"the name `{ALIAS}` is already used in this file; imported as `{alias}`"
        diagnostics.append(codes.diagnostic(codes.NAME_TAKEN, line, 0, message))
    for plan in plans:
        for note in plan.notes:
            line, column = finder.where(note.node)
            diagnostics.append(codes.diagnostic(note.code, lines.out(line), column, note.message))
    steps = [
        StepReport(
            optimizer=plan.optimizer,
            backward_line=lines.out(finder.where(plan.backward)[0]),
            step_line=lines.out(finder.where(plan.step)[0]),
            predict_line=lines.inserted(plan.predict, insertions),
            restore_line=lines.inserted(plan.restore, insertions),
        )
        for plan in plans
        if plan.predict is not None or plan.restore is not None
    ]
    diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return Result(
        text=text, changed=text != source, diagnostics=tuple(diagnostics), steps=tuple(steps)
    )


class _LineMap:
    """Line numbers of the returned text from those of the parsed one: each inserted line
    shifts every line at or after its anchor down by one."""

    def __init__(self, finder: Finder, insertions: list[Insertion]) -> None:
        self.finder = finder
        self.anchors: list[int] = sorted(a for i in insertions if (a := self.anchor(i)) is not None)

    def anchor(self, insertion: Insertion) -> int | None:
        slot = insertion.slot
        if slot.inline:
            return None
        position = self.finder.positions[slot.item.line]
        return position.end.line + 1 if slot.after else position.start.line

    def out(self, line: int) -> int:
        return line + bisect.bisect_right(self.anchors, line)

    def inserted(self, slot: object, insertions: list[Insertion]) -> int | None:
        for insertion in insertions:
            if not isinstance(slot, Slot) or insertion.slot.key() != slot.key():
                continue
            anchor = self.anchor(insertion)
            if anchor is None:
                return self.out(self.finder.where(insertion.slot.item.node)[0])
            same = [i for i in insertions if self.anchor(i) == anchor]
            return anchor + bisect.bisect_left(self.anchors, anchor) + same.index(insertion)
        return None


def _optimizer_of(code: str) -> str:
    """``optimizer`` from ``xgrad.predict(optimizer, s=2)`` / ``m = xgrad.fx.predictive(m, opt,
    s=2)`` (the codemod's own text, so the argument positions are known)."""
    call = cst.parse_expression(code.split(" = ", 1)[-1])
    assert isinstance(call, cst.Call)
    index = 1 if ".fx.predictive(" in code else 0
    return cst.Module([]).code_for_node(call.args[index].value)


def _unplaced(source: str, unplaced: Counter[tuple[str, str]], alias: str) -> Result:
    """A patched file with a call this run would not put back (written by hand, or its step
    is no longer found): stripping it would change what the script does, so leave every byte."""
    (kind, optimizer), *_ = unplaced
    needle = f".{kind}({optimizer}" if kind != "fx" else ".fx.predictive("
    line = next((n for n, text in enumerate(source.splitlines(), 1) if needle in text), 1)
    message = (
        f"this run would not insert {alias}.{kind}({optimizer}, ...) (written by hand, or its "
        "step is no longer found); file left unchanged. Run --revert first to have xgrad-rewrite "
        "place the calls afresh"
    )
    return Result(
        text=source,
        changed=False,
        diagnostics=(codes.diagnostic(codes.UNPLACED, line, 0, message),),
    )
