"""What the codemod inserts, defined once: each line's text, and how to recognise it again.

Every other module asks this one. The planner renders calls with :func:`render`, the import
with :func:`import_line`; the in-place check (ast), revert (libcst), notebooks (one cell's
lines), the hand-written-call check and the "left unchanged" note all recognise them here. So
"what an inserted line looks like" cannot drift between the module that writes it and the
ones that find it again (a line one of them misses would be left behind by ``--revert``, or
deleted when it is the user's own).

Recognition is done once, on the standard library's :mod:`ast`; a libcst node is matched by
parsing its own code (only for statements that already look like one of ours, so a file's
other statements cost a type check).

Only an import under an alias the codemod itself would choose (``xgrad``, ``xgrad_runtime``,
``xgrad_runtime_2``...) is the codemod's: a script that imports the runtime as ``xg`` and calls
``xg.restore(opt)`` wrote that itself, and nothing here will ever call it ours.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import libcst as cst

RUNTIME_MODULE = "xgrad_rewrite.runtime"
ALIAS = "xgrad"
FALLBACK_ALIAS = "xgrad_runtime"
_OUR_ALIAS = re.compile(r"xgrad(_runtime(_\d+)?)?")
# Methods of the runtime a script may call by hand (``with xgrad.predicted(opt):``).
RUNTIME_CALLS = frozenset({"predict", "restore", "predicted"})
# A text without this never holds anything the codemod wrote (prefilter, sweep).
MARKER = "xgrad"
# The callback a framework's Trainer gets (``callbacks=[XGradCallback(s=N)]``), imported from
# ``xgrad_rewrite.integrations.<framework>``; its edits live in ``edit/trainer_callback.py``.
CALLBACK = "XGradCallback"
INTEGRATIONS_PACKAGE = "xgrad_rewrite.integrations."

Kind = Literal["predict", "restore", "fx"]


# -- render ---------------------------------------------------------------------------------
def format_s(s: float) -> str:
    """``2`` for 2.0, ``0.5`` for 0.5: the number as a user would write it."""
    value = float(s)
    return str(int(value)) if value.is_integer() else repr(value)


def import_line(alias: str) -> str:
    return f"import {RUNTIME_MODULE} as {alias}"


def render(kind: Kind, alias: str, optimizer: str, s: float = 1, model: str = "") -> str:
    """The one statement (no newline) the codemod writes for ``kind``."""
    if kind == "predict":
        return f"{alias}.predict({optimizer}, s={format_s(s)})"
    if kind == "restore":
        return f"{alias}.restore({optimizer})"
    return f"{model} = {alias}.fx.predictive({model}, {optimizer}, s={format_s(s)})"


def callback_import_line(integration: str) -> str:
    return f"from {integration} import {CALLBACK}"


def callback_call(s: float) -> str:
    return f"{CALLBACK}(s={format_s(s)})"


def callback_s(node: ast.AST) -> float | None:
    """``s`` of ``XGradCallback(s=<number>)``, exactly the shape :func:`callback_call` writes."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == CALLBACK
        and not node.args
        and len(node.keywords) == 1
        and node.keywords[0].arg == "s"
    ):
        return None
    return _number(node.keywords[0].value)


def _number(node: ast.expr) -> float | None:
    """A literal ``s`` (``2``, ``0.5``), else None (``s=S``, ``s=True``)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    return None


def callback_import(statement: ast.stmt) -> str | None:
    """``M`` for exactly ``from M import XGradCallback`` with ``M`` one of the integrations."""
    if (
        isinstance(statement, ast.ImportFrom)
        and statement.level == 0
        and statement.module is not None
        and statement.module.startswith(INTEGRATIONS_PACKAGE)
        and len(statement.names) == 1
        and statement.names[0].name == CALLBACK
        and statement.names[0].asname is None
    ):
        return statement.module
    return None


def call_prefix(kind: str, optimizer: str) -> str:
    """A piece of text every rendering of that call contains, whatever the alias and ``s``:
    how a "left unchanged" note finds the call's line."""
    return ".fx.predictive(" if kind == "fx" else f".{kind}({optimizer}"


# -- aliases --------------------------------------------------------------------------------
def is_our_alias(alias: str) -> bool:
    """Whether the codemod would choose ``alias`` (``xgrad``, ``xgrad_runtime``, ``..._2``)."""
    return _OUR_ALIAS.fullmatch(alias) is not None


def choose_alias(taken: set[str]) -> str:
    """``xgrad``, or ``xgrad_runtime`` (then ``xgrad_runtime_2``...) when ``xgrad`` is taken."""
    if ALIAS not in taken:
        return ALIAS
    alias, index = FALLBACK_ALIAS, 2
    while alias in taken:
        alias, index = f"{FALLBACK_ALIAS}_{index}", index + 1
    return alias


# -- recognise on ast -----------------------------------------------------------------------
def runtime_alias(statement: ast.stmt) -> str | None:
    """``A`` for ``import xgrad_rewrite.runtime as A`` (and nothing else in the statement),
    whoever wrote it."""
    if isinstance(statement, ast.Import) and len(statement.names) == 1:
        alias = statement.names[0]
        if alias.name == RUNTIME_MODULE and alias.asname:
            return alias.asname
    return None


def our_import_alias(statement: ast.stmt) -> str | None:
    """``A`` when ``statement`` is the codemod's own import line (an alias it would choose)."""
    alias = runtime_alias(statement)
    return alias if alias is not None and is_our_alias(alias) else None


def line_import_alias(line: str) -> str | None:
    """:func:`our_import_alias` of one line of text (a notebook cell's line), else None."""
    if MARKER not in line:
        return None
    try:
        body = ast.parse(line.strip()).body
    except SyntaxError:
        return None
    return our_import_alias(body[0]) if len(body) == 1 else None


def inserted_call(
    statement: ast.stmt, aliases: set[str], segment: Callable[[ast.AST], str]
) -> tuple[Kind, str] | None:
    """(kind, optimizer source) when ``statement`` is a call :func:`render` writes under one of
    ``aliases``; ``segment`` gives a node's source text."""
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        call = statement.value
        func = call.func
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in aliases
            and len(call.args) == 1
            and not isinstance(call.args[0], ast.Starred)
        ):
            return None
        keywords = [k.arg for k in call.keywords]
        if func.attr == "predict" and keywords == ["s"]:
            return "predict", segment(call.args[0])
        if func.attr == "restore" and keywords == []:
            return "restore", segment(call.args[0])
        return None
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        call = statement.value
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "predictive"
            and isinstance(call.func.value, ast.Attribute)
            and call.func.value.attr == "fx"
            and isinstance(call.func.value.value, ast.Name)
            and call.func.value.value.id in aliases
            and len(call.args) == 2
            and not any(isinstance(a, ast.Starred) for a in call.args)
            and [k.arg for k in call.keywords] == ["s"]
            and segment(statement.targets[0]) == segment(call.args[0])
        ):
            return None
        return "fx", segment(call.args[1])
    return None


def written_s(tree: ast.Module) -> float | None:
    """The ``s`` an earlier run wrote (its first predict, fx or callback call), else None."""
    aliases = {a for s in tree.body if (a := our_import_alias(s)) is not None}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            s = callback_s(node)
        elif isinstance(node, ast.stmt) and inserted_call(node, aliases, ast.unparse):
            assert isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Call)
            keywords = node.value.keywords  # predict and fx: `s=` only; restore: none
            s = _number(keywords[0].value) if keywords else None
        else:
            continue
        if s is not None:
            return s
    return None


def is_context_call(call: ast.Call) -> bool:
    """``<anything>.predicted(...)`` or ``predicted(...)``: the runtime's context manager,
    written by hand (under any alias: the script's own ``with xg.predicted(opt):`` counts)."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr == "predicted"
    return isinstance(func, ast.Name) and func.id == "predicted"


def hand_call(call: ast.Call, aliases: set[str]) -> str | None:
    """The method name when ``call`` is ``A.predict/restore/predicted(...)`` with ``A`` one of
    ``aliases`` (any alias of the runtime: the user's own calls count too)."""
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in aliases
        and func.attr in RUNTIME_CALLS
    ):
        return func.attr
    return None


# -- recognise on libcst (edit/ only) ---------------------------------------------------------
def cst_import_alias(statement: cst.CSTNode) -> str | None:
    """:func:`runtime_alias` of a libcst statement line (any alias)."""
    import libcst as cst

    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    node = statement.body[0]
    if not isinstance(node, cst.Import) or len(node.names) != 1 or node.names[0].asname is None:
        return None
    parsed = _parse_small(cst.Module([]).code_for_node(node))
    return runtime_alias(parsed) if parsed is not None else None


def cst_inserted_call(node: cst.CSTNode, aliases: set[str]) -> tuple[Kind, str] | None:
    """:func:`inserted_call` of a libcst small statement."""
    import libcst as cst

    value = node.value if isinstance(node, (cst.Expr, cst.Assign)) else None
    if not isinstance(value, cst.Call):
        return None
    head = value.func
    while isinstance(head, cst.Attribute):
        head = head.value
    if not (isinstance(head, cst.Name) and head.value in aliases):
        return None
    code = _small_code(cst.Module([]).code_for_node(node))
    parsed = _parse_small(code)
    if parsed is None:
        return None
    return inserted_call(parsed, aliases, lambda n: ast.get_source_segment(code, n) or "")


def _small_code(code: str) -> str:
    """A small statement's own code without the ``; `` that joins it to the next one."""
    return code.strip().rstrip(";").rstrip()


def cst_callback_s(node: cst.CSTNode) -> float | None:
    """:func:`callback_s` of a libcst expression."""
    import libcst as cst

    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Name)):
        return None
    if node.func.value != CALLBACK:
        return None
    try:
        parsed = ast.parse(cst.Module([]).code_for_node(node).strip(), mode="eval").body
    except SyntaxError:
        return None
    return callback_s(parsed)


def cst_callback_import(statement: cst.CSTNode) -> str | None:
    """:func:`callback_import` of a libcst statement line."""
    import libcst as cst

    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    if not isinstance(statement.body[0], cst.ImportFrom):
        return None
    parsed = _parse_small(cst.Module([]).code_for_node(statement.body[0]))
    return callback_import(parsed) if parsed is not None else None


def _parse_small(code: str) -> ast.stmt | None:
    try:
        body = ast.parse(_small_code(code)).body
    except SyntaxError:
        return None
    return body[0] if len(body) == 1 else None
