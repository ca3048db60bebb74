"""Frameworks without a visible loop: add ``XGradCallback(s=N)`` to ``Trainer(...)`` calls.

``transformers.Trainer`` (and ``Seq2SeqTrainer``), ``lightning.Trainer`` /
``lightning.pytorch.Trainer`` and ``pytorch_lightning.Trainer`` own their training step, so there
is no backward/step pair to patch; their callback hooks do the predict/restore instead
(:mod:`xgrad_rewrite.integrations`). Which call is a Trainer is decided by what the name was
imported as, never by the name alone, in one place: :mod:`..analysis.trainers`, on the ast.

Byte-exact revert: an appended list element or keyword argument takes over the trailing comma
and closing whitespace of the item before it, and revert hands them back; the import line takes
the blank lines above the statement it precedes (the codemod's own ``import_slot`` rule).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from xgrad_rewrite.codemod import diagnostics as codes
from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.analysis.calls import Insertion
from xgrad_rewrite.codemod.analysis.find import Finder
from xgrad_rewrite.codemod.analysis.imports import import_slot
from xgrad_rewrite.codemod.analysis.trainers import (
    CALLBACK,
    HF,
    HF_CALLBACKS_POSITION,
    INTEGRATIONS,
    trainer_calls,
)
from xgrad_rewrite.codemod.api import Diagnostic
from xgrad_rewrite.codemod.edit.cstmap import locate
from xgrad_rewrite.codemod.edit.patch import apply
from xgrad_rewrite.codemod.inserted import callback_import_line, format_s

STARRED_ARGS = codes.TRAINER_STARRED_ARGS
NOT_A_LIST = codes.TRAINER_NOT_A_LIST
NAME_TAKEN = codes.TRAINER_NAME_TAKEN
MIXED_FRAMEWORKS = codes.TRAINER_MIXED_FRAMEWORKS


def add_trainer_callbacks(
    module: cst.Module, s: float, revert: bool
) -> tuple[cst.Module, list[Diagnostic]]:
    """``module`` with ``XGradCallback(s=s)`` in every Trainer call's ``callbacks`` (plus the
    import), or, with ``revert``, without what an earlier run added. Pure; never raises for
    source it does not understand, it leaves that call alone and says why."""
    if revert:
        return _revert(module), []
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    found = _find(wrapper)
    diagnostics = list(found.diagnostics)
    if not found.calls:
        return module, diagnostics
    integration = found.calls[0].integration
    if _name_taken(module, integration):
        where = found.calls[0]
        message = codes.message(
            NAME_TAKEN, name=CALLBACK, callback=f"{integration}.{CALLBACK}(s={format_s(s)})"
        )
        return module, [*diagnostics, _diagnostic(NAME_TAKEN, where.line, where.column, message)]
    patcher = _CallPatcher(found, integration, format_s(s))
    module = module.visit(patcher)
    diagnostics.extend(patcher.diagnostics)
    if patcher.patched and not _has_import(module, integration):
        tree = ast.parse(module.code)
        slot, take_leading = import_slot(tree)
        code = callback_import_line(integration)
        module = apply(module, [Insertion(slot, code, take_leading)], locate(module, tree))
        line = _import_line(module, code)
        diagnostics = [
            d if d.line < line else _diagnostic(d.code, d.line + 1, d.column, d.message)
            for d in diagnostics
        ]
    diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
    return module, diagnostics


# --- find -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Call:
    node: cst.Call
    integration: str
    line: int
    column: int


@dataclass
class _Found:
    calls: list[_Call]
    diagnostics: list[Diagnostic]


def _diagnostic(code: str, line: int, column: int, message: str) -> Diagnostic:
    return codes.diagnostic(code, line, column, message)


def _find(wrapper: MetadataWrapper) -> _Found:
    """Every Trainer call, with the integration module its callback comes from.

    Which call is a Trainer is decided once, on the ast (:func:`.trainers.trainer_calls`, the
    same answer ``--check`` gives without libcst); here each is only found again as a libcst
    node, by where it starts."""
    code = wrapper.module.code
    finder = Finder(ast.parse(code), code)
    wanted = {
        finder.where(call): (integration, finder.code(call.func))
        for call, integration in trainer_calls(finder)
    }
    found = _Found([], [])
    if not wanted:
        return found
    positions = wrapper.resolve(PositionProvider)
    code_of = cst.Module([]).code_for_node
    located = sorted(
        (
            (position.start.line, position.start.column, node)
            for node, position in positions.items()
            if isinstance(node, cst.Call)
            and (where := (position.start.line, position.start.column)) in wanted
            and code_of(node.func) == wanted[where][1]  # not `Trainer(...).train()` around it
        ),
        key=lambda item: (item[0], item[1]),
    )
    for line, column, node in located:
        call = _Call(node, wanted[(line, column)][0], line, column)  # type: ignore[arg-type]
        if found.calls and call.integration != found.calls[0].integration:
            first = found.calls[0].integration
            message = codes.message(MIXED_FRAMEWORKS, first=f"{first}.{CALLBACK}")
            found.diagnostics.append(_diagnostic(MIXED_FRAMEWORKS, line, column, message))
            continue
        found.calls.append(call)
    return found


def _name_taken(module: cst.Module, integration: str) -> bool:
    """Whether ``XGradCallback`` is bound by anything but an import from ``integration``."""
    for node in _nodes(module, (cst.ClassDef, cst.FunctionDef)):
        if node.name.value == CALLBACK:  # type: ignore[attr-defined]
            return True
    for target in _nodes(module, (cst.AssignTarget,)):
        if _is_name(target.target, CALLBACK):  # type: ignore[attr-defined]
            return True
    for node in _nodes(module, (cst.ImportFrom, cst.Import)):
        names = node.names  # type: ignore[attr-defined]
        if isinstance(names, cst.ImportStar):
            continue
        for alias in names:
            bound = alias.evaluated_alias or alias.evaluated_name
            if bound != CALLBACK:
                continue
            module_name = (
                cst.Module([]).code_for_node(node.module)
                if isinstance(node, cst.ImportFrom) and node.module is not None
                else None
            )
            if module_name != integration or alias.asname is not None:
                return True
    return False


def _has_import(module: cst.Module, integration: str) -> bool:
    for statement in module.body:
        for node in _nodes(statement, (cst.ImportFrom,)):
            assert isinstance(node, cst.ImportFrom)
            if node.module is None or isinstance(node.names, cst.ImportStar):
                continue
            if cst.Module([]).code_for_node(node.module) != integration:
                continue
            if any(a.evaluated_name == CALLBACK and a.asname is None for a in node.names):
                return True
    return False


def _import_line(module: cst.Module, code: str) -> int:
    lines = module.code.splitlines()
    return next((i + 1 for i, text in enumerate(lines) if text.strip() == code), 1)


def _is_name(node: object, value: str) -> bool:
    return isinstance(node, cst.Name) and node.value == value


class _Nodes(cst.CSTVisitor):
    def __init__(self, kinds: tuple[type[cst.CSTNode], ...]) -> None:
        super().__init__()
        self.kinds = kinds
        self.found: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, self.kinds):
            self.found.append(node)
        return True


def _nodes(tree: cst.CSTNode, kinds: tuple[type[cst.CSTNode], ...]) -> list[cst.CSTNode]:
    """Every node of ``kinds`` in ``tree``, itself included (what libcst.matchers' ``findall``
    gave, without importing libcst.matchers: about 0.2 s on its own)."""
    visitor = _Nodes(kinds)
    tree.visit(visitor)
    return visitor.found


# --- patch ------------------------------------------------------------------------------------


def _is_ours(node: cst.BaseExpression) -> bool:
    """``XGradCallback(s=<number>)``, the exact shape this module writes."""
    return inserted.cst_callback_s(node) is not None


def _with_s(element: cst.Element, s: str) -> cst.Element:
    """Our element with ``s`` updated in place (untouched when the number is equal)."""
    call = element.value
    assert isinstance(call, cst.Call)
    arg = call.args[0]
    assert isinstance(arg.value, cst.Integer | cst.Float)
    if float(arg.value.value) == float(s):
        return element
    number = cst.parse_expression(s)
    return element.with_changes(value=call.with_changes(args=[arg.with_changes(value=number)]))


def _callback(s: str) -> cst.Call:
    expression = cst.parse_expression(inserted.callback_call(float(s)))
    assert isinstance(expression, cst.Call)
    return expression


def _multiline_comma(comma: object) -> bool:
    return isinstance(comma, cst.Comma) and isinstance(
        comma.whitespace_after, cst.ParenthesizedWhitespace
    )


def _multiline_arg_end(item: object) -> bool:
    """A last call argument without trailing comma, the ``)`` on a line of its own."""
    return (
        isinstance(item, cst.Arg)
        and not isinstance(item.comma, cst.Comma)
        and isinstance(item.whitespace_after_arg, cst.ParenthesizedWhitespace)
    )


def _append(items: Sequence, new, opening_whitespace):  # type: ignore[no-untyped-def]
    """``items + [new]`` laid out like its neighbours; :func:`_remove` undoes it exactly.

    One item per line: the last item keeps its line (and the comment at its end) and ends with
    the separator its neighbours use; the new line takes the closing part (a trailing comma,
    comment lines, the indentation before the bracket). On one line, the new item takes over
    the last one's trailing comma (and, for call arguments, the whitespace before ``)``), and
    the last item gets the separator."""
    if not items:
        return [new]
    last = items[-1]
    separator = items[-2].comma if len(items) > 1 else None
    if separator is None and isinstance(last.comma, cst.Comma):
        separator = cst.Comma(whitespace_after=opening_whitespace)
    if separator is None:
        separator = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if _multiline_comma(last.comma) and _multiline_comma(separator):
        closing, between = last.comma.whitespace_after, separator.whitespace_after
        line_end = closing.with_changes(
            empty_lines=(), indent=between.indent, last_line=between.last_line
        )
        new = new.with_changes(
            comma=last.comma.with_changes(
                whitespace_after=closing.with_changes(first_line=cst.TrailingWhitespace())
            )
        )
        return [
            *items[:-1],
            last.with_changes(comma=last.comma.with_changes(whitespace_after=line_end)),
            new,
        ]
    if _multiline_arg_end(last) and _multiline_comma(separator):
        closing = last.whitespace_after_arg
        line_end = separator.whitespace_after.with_changes(first_line=closing.first_line)
        new = new.with_changes(
            whitespace_after_arg=closing.with_changes(first_line=cst.TrailingWhitespace())
        )
        last = last.with_changes(
            comma=separator.with_changes(whitespace_after=line_end),
            whitespace_after_arg=cst.SimpleWhitespace(""),
        )
        return [*items[:-1], last, new]
    new = new.with_changes(comma=last.comma)
    changes = {"comma": separator}
    if isinstance(last, cst.Arg):
        new = new.with_changes(whitespace_after_arg=last.whitespace_after_arg)
        changes["whitespace_after_arg"] = cst.SimpleWhitespace("")
    return [*items[:-1], last.with_changes(**changes), new]


def _remove(items: Sequence, index: int) -> list:  # type: ignore[type-arg]
    """``items`` without ``items[index]``; when it was the last, the one before gets its tail
    back (the inverse of :func:`_append`)."""
    removed = items[index]
    rest = [*items[:index], *items[index + 1 :]]
    if index != len(items) - 1 or not rest:
        return rest
    previous = rest[-1]
    if _multiline_comma(removed.comma) and _multiline_comma(previous.comma):
        closing, line_end = removed.comma.whitespace_after, previous.comma.whitespace_after
        whitespace = closing.with_changes(first_line=line_end.first_line)
        rest[-1] = previous.with_changes(
            comma=previous.comma.with_changes(whitespace_after=whitespace)
        )
        return rest
    if _multiline_arg_end(removed) and _multiline_comma(previous.comma):
        closing = removed.whitespace_after_arg
        whitespace = closing.with_changes(first_line=previous.comma.whitespace_after.first_line)
        rest[-1] = previous.with_changes(comma=removed.comma, whitespace_after_arg=whitespace)
        return rest
    changes = {"comma": removed.comma}
    if isinstance(removed, cst.Arg):
        changes["whitespace_after_arg"] = removed.whitespace_after_arg
    rest[-1] = previous.with_changes(**changes)
    return rest


def _append_element(value: cst.List, new: cst.Element) -> cst.List:
    """A list literal with ``new`` at the end. In a list, the end of the last line (its comment,
    comment lines below it, the indentation of ``]``) belongs to the ``]``; the last element's
    comment stays on its line and the new line takes the rest."""
    elements, closing = list(value.elements), value.rbracket.whitespace_before
    opening = value.lbracket.whitespace_after
    separator = elements[-2].comma if len(elements) > 1 else cst.Comma(whitespace_after=opening)
    if (
        elements
        and isinstance(closing, cst.ParenthesizedWhitespace)
        and _multiline_comma(separator)
    ):
        last = elements[-1]
        line_end = separator.whitespace_after.with_changes(first_line=closing.first_line)
        comma = last.comma if isinstance(last.comma, cst.Comma) else separator
        elements[-1] = last.with_changes(comma=comma.with_changes(whitespace_after=line_end))
        elements.append(new.with_changes(comma=last.comma))
        closing = closing.with_changes(first_line=cst.TrailingWhitespace())
        return value.with_changes(
            elements=elements, rbracket=value.rbracket.with_changes(whitespace_before=closing)
        )
    return value.with_changes(elements=_append(elements, new, opening))


def _remove_element(value: cst.List, index: int) -> cst.List:
    """The inverse of :func:`_append_element` for the last element; else a plain removal."""
    elements, closing = list(value.elements), value.rbracket.whitespace_before
    if (
        index == len(elements) - 1
        and index > 0
        and isinstance(closing, cst.ParenthesizedWhitespace)
        and _multiline_comma(elements[index - 1].comma)
    ):
        removed = elements.pop()
        previous = elements[-1]
        first_line = previous.comma.whitespace_after.first_line
        elements[-1] = previous.with_changes(comma=removed.comma)
        closing = closing.with_changes(first_line=first_line)
        return value.with_changes(
            elements=elements, rbracket=value.rbracket.with_changes(whitespace_before=closing)
        )
    return value.with_changes(elements=_remove(elements, index))


class _CallPatcher(cst.CSTTransformer):
    def __init__(self, found: _Found, integration: str, s: str) -> None:
        super().__init__()
        self.calls = {id(c.node): c for c in found.calls if c.integration == integration}
        self.s = s
        self.patched = 0
        self.diagnostics: list[Diagnostic] = []

    def _skip(self, call: _Call, code: str, message: str) -> cst.Call:
        self.diagnostics.append(_diagnostic(code, call.line, call.column, message))
        return call.node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        call = self.calls.get(id(original_node))
        if call is None:
            return updated_node
        callback = f"{CALLBACK}(s={self.s})"
        if any(a.star for a in updated_node.args):
            return self._skip(call, STARRED_ARGS, codes.message(STARRED_ARGS, callback=callback))
        positional = [a for a in updated_node.args if a.keyword is None]
        if call.integration == HF and len(positional) > HF_CALLBACKS_POSITION:
            message = codes.message(
                NOT_A_LIST, how="callbacks passed by position", callback=callback
            )
            return self._skip(call, NOT_A_LIST, message)
        index = next(
            (
                i
                for i, a in enumerate(updated_node.args)
                if a.keyword is not None and a.keyword.value == "callbacks"
            ),
            None,
        )
        if index is None:
            arg = cst.Arg(
                keyword=cst.Name("callbacks"),
                value=cst.List([cst.Element(_callback(self.s))]),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""),
                    whitespace_after=cst.SimpleWhitespace(""),
                ),
            )
            args = _append(updated_node.args, arg, updated_node.whitespace_before_args)
            self.patched += 1
            return updated_node.with_changes(args=args)
        arg = updated_node.args[index]
        if not isinstance(arg.value, cst.List):
            message = codes.message(
                NOT_A_LIST, how="callbacks is not a list literal", callback=callback
            )
            return self._skip(call, NOT_A_LIST, message)
        elements = list(arg.value.elements)
        ours = [i for i, e in enumerate(elements) if _is_ours(e.value)]
        if ours:
            elements[ours[0]] = _with_s(elements[ours[0]], self.s)
            value = arg.value.with_changes(elements=elements)
        else:
            value = _append_element(arg.value, cst.Element(_callback(self.s)))
        self.patched += 1
        args = list(updated_node.args)
        args[index] = arg.with_changes(value=value)
        return updated_node.with_changes(args=args)


# --- revert -----------------------------------------------------------------------------------


class _CallReverter(cst.CSTTransformer):
    """Drops ``XGradCallback(s=N)`` from ``callbacks=[...]``, and the keyword when it held
    nothing else (a ``callbacks=[]`` written by hand therefore goes too)."""

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        args = list(updated_node.args)
        for index in reversed(range(len(args))):
            arg = args[index]
            if arg.keyword is None or arg.keyword.value != "callbacks":
                continue
            if not isinstance(arg.value, cst.List):
                continue
            value = arg.value
            ours = [i for i, e in enumerate(value.elements) if _is_ours(e.value)]
            if not ours:
                continue
            for i in reversed(ours):
                value = _remove_element(value, i)
            if value.elements:
                args[index] = arg.with_changes(value=value)
            else:
                args = _remove(args, index)
        return updated_node.with_changes(args=args)


def _revert(module: cst.Module) -> cst.Module:
    if not any(_has_import(module, i) for i in INTEGRATIONS):
        return module
    module = module.visit(_CallReverter())
    names = (n for s in module.body if not _is_our_import(s) for n in _nodes(s, (cst.Name,)))
    if any(_is_name(n, CALLBACK) for n in names):
        return module  # still used elsewhere: keep the import
    body: list[cst.BaseStatement] = []
    pending: list[cst.EmptyLine] = []
    for statement in module.body:
        if _is_our_import(statement):
            pending.extend(statement.leading_lines)
            continue
        if pending:
            statement = statement.with_changes(leading_lines=[*pending, *statement.leading_lines])
            pending = []
        body.append(statement)
    return module.with_changes(body=body, footer=[*pending, *module.footer])


def _is_our_import(statement: cst.CSTNode) -> bool:
    """A line that is exactly ``from xgrad_rewrite.integrations.X import XGradCallback``."""
    return inserted.cst_callback_import(statement) in INTEGRATIONS
