"""Where ``import xgrad_rewrite.runtime as xgrad`` goes, and under which alias."""

from __future__ import annotations

import ast

from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.analysis.blocks import Slot
from xgrad_rewrite.codemod.analysis.positions import Positions


def our_imports(tree: ast.Module, positions: Positions) -> dict[ast.stmt, str]:
    """Top-level lines that are exactly ``import xgrad_rewrite.runtime as <alias>`` under a name
    the codemod would choose (what revert takes out), each with its alias."""
    out = {}
    for index, statement in enumerate(tree.body):
        alias = inserted.our_import_alias(statement)
        if alias is None:
            continue
        alone = positions.starts_line(statement) and (
            index + 1 == len(tree.body) or tree.body[index + 1].lineno > statement.end_lineno
        )
        if alone:
            out[statement] = alias
    return out


def our_aliases(tree: ast.Module, positions: Positions) -> set[str]:
    return set(our_imports(tree, positions).values())


def choose_alias(tree: ast.Module, positions: Positions, names: set[str]) -> tuple[str, bool]:
    """(alias, import needed), given every name the module uses. Reuses an existing
    ``import xgrad_rewrite.runtime as A``; else ``xgrad``, or ``xgrad_runtime`` (then
    ``xgrad_runtime_2``...) when the file already uses the name ``xgrad`` for something else."""
    existing = sorted(our_aliases(tree, positions))
    if existing:
        return existing[0], False
    return inserted.choose_alias(names), True


def import_slot(tree: ast.Module) -> tuple[Slot, bool]:
    """(slot, take_leading): right after the module docstring and ``__future__`` imports. The
    import takes the blank lines above the next statement when that is an import too (so it joins
    the import block); otherwise it sits directly under the docstring/``__future__`` lines."""
    body = tree.body
    index = 0
    if index < len(body) and _is_docstring(body[index]):
        index += 1
    while index < len(body) and _is_future(body[index]):
        index += 1
    if index == len(body):
        return Slot(body[-1], after=True), False
    target = body[index]
    joins_imports = isinstance(target, (ast.Import, ast.ImportFrom))
    if not joins_imports and index > 0:
        return Slot(body[index - 1], after=True), False
    return Slot(target), joins_imports


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, (str, bytes))
    )


def _is_future(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.ImportFrom) and statement.module == "__future__"
