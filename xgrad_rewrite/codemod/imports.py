"""Where ``import xgrad_rewrite.runtime as xgrad`` goes, and under which alias."""

from __future__ import annotations

import libcst as cst

from xgrad_rewrite.codemod.blocks import Item, Slot
from xgrad_rewrite.codemod.revert import RUNTIME_MODULE, runtime_aliases

ALIAS = "xgrad"
FALLBACK_ALIAS = "xgrad_runtime"


def choose_alias(module: cst.Module, names: set[str]) -> tuple[str, bool]:
    """(alias, import needed), given every name the module uses. Reuses an existing
    ``import xgrad_rewrite.runtime as A``; else ``xgrad``, or ``xgrad_runtime`` (then
    ``xgrad_runtime_2``...) when the file already uses the name ``xgrad`` for something else."""
    existing = sorted(runtime_aliases(module))
    if existing:
        return existing[0], False
    if ALIAS not in names:
        return ALIAS, True
    alias, index = FALLBACK_ALIAS, 2
    while alias in names:
        alias, index = f"{FALLBACK_ALIAS}_{index}", index + 1
    return alias, True


def import_code(alias: str) -> str:
    return f"import {RUNTIME_MODULE} as {alias}"


def import_slot(module: cst.Module) -> tuple[Slot, bool]:
    """(slot, take_leading): right after the module docstring and ``__future__`` imports. The
    import takes the blank lines above the next statement when that is an import too (so it joins
    the import block); otherwise it sits directly under the docstring/``__future__`` lines."""
    body = module.body
    index = 0
    if index < len(body) and _is_docstring(body[index]):
        index += 1
    while index < len(body) and _is_future(body[index]):
        index += 1
    if index == len(body):
        last = body[-1]
        return Slot(
            Item(last, 0 if isinstance(last, cst.SimpleStatementLine) else None, last), after=True
        ), False
    target = body[index]
    small = 0 if isinstance(target, cst.SimpleStatementLine) else None
    joins_imports = isinstance(target, cst.SimpleStatementLine) and isinstance(
        target.body[0], (cst.Import, cst.ImportFrom)
    )
    if not joins_imports and index > 0:
        previous = body[index - 1]
        return Slot(Item(previous, 0, previous), after=True), False
    return Slot(Item(target, small, target)), joins_imports


def _is_docstring(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _is_future(statement: cst.BaseStatement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.ImportFrom)
        and isinstance(statement.body[0].module, cst.Name)
        and statement.body[0].module.value == "__future__"
    )
