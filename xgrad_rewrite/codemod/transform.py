"""``rewrite(source, options) -> Result``: revert, analyse, patch (pure text to text).

Every run starts from the file with earlier insertions removed, then inserts afresh: that makes
a second run a no-op, a new ``s`` update the calls in place, and ``revert`` exact.

The analysis (which steps, which optimizer, where the calls go) runs on the standard library's
:mod:`ast`; libcst, whose import alone costs more than a whole ``black --check``, is loaded only
to edit: to remove an earlier run's calls, to add a Trainer callback, or to write the new text.
A file that has none of those to do (the common ``--check`` of an unpatched script) is answered
from the analysis alone, and its new text is made only if asked for.
"""

from __future__ import annotations

import ast
import bisect
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result, StepReport
from xgrad_rewrite.codemod.blocks import Slot, items_of
from xgrad_rewrite.codemod.calls import Insertion, format_s
from xgrad_rewrite.codemod.find import Finder, Plan, find
from xgrad_rewrite.codemod.fx_mode import find_fx
from xgrad_rewrite.codemod.imports import (
    ALIAS,
    RUNTIME_MODULE,
    choose_alias,
    import_code,
    import_slot,
)

if TYPE_CHECKING:
    import libcst as cst


def parse_ast(source: str) -> ast.Module:
    """The standard library's tree, or :class:`ParseError` with the position Python reports."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for "\d" in a string: not ours
            return ast.parse(source)
    except SyntaxError as error:
        column = max((error.offset or 1) - 1, 0)
        raise ParseError(error.msg, error.lineno or 1, column) from error
    except ValueError as error:  # null bytes (Python < 3.12)
        raise ParseError(str(error), 1, 0) from error


def parse(source: str) -> cst.Module:
    """libcst's tree, or :class:`ParseError` with the position Python itself reports."""
    import libcst as cst

    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        raise ParseError(error.message, error.raw_line, error.raw_column) from error


def rewrite(source: str, options: Options | None = None) -> Result:
    """``source`` with XGrad calls inserted (or removed, with ``options.revert``)."""
    options = options or Options()
    tree = parse_ast(source)
    callbacks = options.mode == "eager" and "Trainer" in source
    if not (options.revert or callbacks or RUNTIME_MODULE in source or "XGradCallback" in source):
        return _patch(source, source, tree, None, [], [], options)

    from xgrad_rewrite.codemod.revert import revert

    module, removed = revert(parse(source))
    if "XGradCallback" in source:
        from xgrad_rewrite.codemod.trainer_callback import add_trainer_callbacks

        module = add_trainer_callbacks(module, options.s, revert=True)[0]
    if options.revert:
        text = module.code
        return Result(text=text, changed=text != source)

    diagnostics: list[Diagnostic] = []
    if callbacks:
        # Frameworks that own their loop (transformers/Lightning Trainer) get a callback; imported
        # only here because it needs libcst.matchers, whose import alone takes about a second.
        from xgrad_rewrite.codemod.trainer_callback import add_trainer_callbacks

        module, trainer_diagnostics = add_trainer_callbacks(module, options.s, revert=False)
        diagnostics.extend(trainer_diagnostics)
    text = module.code
    if text != source:
        tree = ast.parse(text)
    return _patch(source, text, tree, module, removed, diagnostics, options)


def _patch(
    source: str,
    text: str,
    tree: ast.Module,
    module: cst.Module | None,
    removed: list[tuple[str, str]],
    diagnostics: list[Diagnostic],
    options: Options,
) -> Result:
    """Analyse ``text`` (``source`` with earlier insertions removed; ``module`` its libcst tree,
    None when libcst was not needed so far) and insert the calls."""
    finder = Finder(tree, text)
    alias, needs_import = choose_alias(tree, finder.positions, finder.collected.names)
    s = format_s(options.s)
    insertions: list[Insertion] = []
    plans: list[Plan] = []
    kinds: dict[int, tuple[str, str]] = {}  # id(insertion) -> (kind, optimizer source)
    if options.mode == "fx":
        for plan, model in find_fx(finder, options):
            plans.append(plan)
            if plan.predict is not None:
                code = f"{model} = {alias}.fx.predictive({model}, {plan.optimizer}, s={s})"
                insertions.append(Insertion(plan.predict, code))
                kinds[id(insertions[-1])] = ("fx", plan.optimizer)
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
                kinds[id(insertions[-1])] = (kind, plan.optimizer)
    insertions.sort(key=lambda i: 0 if kinds[id(i)][0] == "restore" else 1)

    unplaced = Counter(removed) - Counter(kinds[id(i)] for i in insertions)
    if unplaced:
        return _unplaced(source, unplaced, alias)

    if insertions and needs_import:
        slot, take_leading = import_slot(tree)
        insertions.insert(0, Insertion(slot, import_code(alias), take_leading))

    new_text = _new_text(text, tree, module, insertions)
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
    if module is None:  # nothing removed: any insertion changes the text
        changed = bool(insertions)
    else:
        assert isinstance(new_text, str)
        changed = new_text != source
    return Result(
        text=new_text if changed else source,
        changed=changed,
        diagnostics=tuple(diagnostics),
        steps=tuple(steps),
    )


def _new_text(
    text: str, tree: ast.Module, module: cst.Module | None, insertions: list[Insertion]
) -> str | Callable[[], str]:
    """The patched text; made on demand when libcst has not been loaded yet."""
    if not insertions:
        return text

    def make() -> str:
        from xgrad_rewrite.codemod.cstmap import locate
        from xgrad_rewrite.codemod.patch import apply

        parsed = module if module is not None else parse(text)
        return apply(parsed, insertions, locate(parsed, tree)).code

    return make() if module is not None else make


class _LineMap:
    """Line numbers of the returned text from those of the parsed one: each inserted line
    shifts every line at or after its anchor down by one."""

    def __init__(self, finder: Finder, insertions: list[Insertion]) -> None:
        self.finder = finder
        self.anchors: list[int] = sorted(a for i in insertions if (a := self.anchor(i)) is not None)

    def anchor(self, insertion: Insertion) -> int | None:
        """The line the inserted line will have, before shifting; None for an inline call."""
        item = insertion.slot.item
        if insertion.slot.after:
            return self.line_end(item) + 1
        if not self.finder.positions.starts_line(item):
            return None
        return item.lineno

    def line_end(self, item: ast.stmt) -> int:
        """The last line of ``item`` and of whatever follows it on that line (``a = 1; b = 2``)."""
        items = items_of(self.finder.nav.blocks[item])
        index = next(i for i, it in enumerate(items) if it is item)
        end = item.end_lineno or item.lineno
        while index + 1 < len(items) and items[index + 1].lineno == end:
            index += 1
            end = items[index].end_lineno or end
        return end

    def out(self, line: int) -> int:
        return line + bisect.bisect_right(self.anchors, line)

    def inserted(self, slot: object, insertions: list[Insertion]) -> int | None:
        for insertion in insertions:
            if not isinstance(slot, Slot) or insertion.slot.key() != slot.key():
                continue
            anchor = self.anchor(insertion)
            if anchor is None:
                return self.out(self.finder.where(insertion.slot.item)[0])
            same = [i for i in insertions if self.anchor(i) == anchor]
            return anchor + bisect.bisect_left(self.anchors, anchor) + same.index(insertion)
        return None


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
