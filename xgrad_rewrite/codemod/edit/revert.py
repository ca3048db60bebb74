"""Revert: remove exactly what :mod:`.patch` inserted, handing comments and blank lines back.

Recognised only in the shapes the codemod writes, under an alias bound by a top-level
``import xgrad_rewrite.runtime as <alias>``: ``<alias>.predict(<opt>, s=<n>)`` and
``<alias>.restore(<opt>)`` statements, and ``<m> = <alias>.fx.predictive(<m>, <opt>, s=<n>)``.
The import goes too unless something else in the file still uses the alias.
"""

from __future__ import annotations

import re

import libcst as cst

from xgrad_rewrite.codemod import inserted


def runtime_aliases(module: cst.Module) -> set[str]:
    """Aliases bound by the codemod's own import line at top level (see :mod:`..inserted`)."""
    return {
        a
        for stmt in module.body
        if (a := import_alias(stmt)) is not None and inserted.is_our_alias(a)
    }


def import_alias(statement: cst.CSTNode) -> str | None:
    return inserted.cst_import_alias(statement)


def is_inserted(node: cst.CSTNode, aliases: set[str]) -> bool:
    """Whether a small statement is one of the calls the codemod writes."""
    return inserted.cst_inserted_call(node, aliases) is not None


class _Remover(cst.CSTTransformer):
    def __init__(self, aliases: set[str], drop_import: bool) -> None:
        super().__init__()
        self.aliases = aliases
        self.drop_import = drop_import
        self.removed = 0
        self.calls: list[tuple[str, str]] = []

    def _drop(self, statement: cst.BaseStatement) -> bool:
        if self.drop_import and import_alias(statement) in self.aliases:
            return True
        return isinstance(statement, cst.SimpleStatementLine) and all(
            is_inserted(s, self.aliases) for s in statement.body
        )

    def _keep_small(self, original, updated):  # type: ignore[no-untyped-def]
        found = [(s, inserted.cst_inserted_call(s, self.aliases)) for s in updated.body]
        kept = [s for s, call in found if call is None]
        if len(kept) == len(updated.body):
            return updated
        self.calls.extend(call for _, call in found if call is not None)
        if not kept:
            return updated  # the whole line goes, in the block
        self.removed += len(updated.body) - len(kept)
        return updated.with_changes(body=kept)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        return self._keep_small(original_node, updated_node)

    def leave_SimpleStatementSuite(
        self, original_node: cst.SimpleStatementSuite, updated_node: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        return self._keep_small(original_node, updated_node)

    def _block(self, updated):  # type: ignore[no-untyped-def]
        body: list[cst.BaseStatement] = []
        pending: list[cst.EmptyLine] = []
        for statement in updated.body:
            if self._drop(statement):
                self.removed += 1
                pending.extend(statement.leading_lines)
                continue
            if pending:
                statement = statement.with_changes(
                    leading_lines=[*pending, *statement.leading_lines]
                )
                pending = []
            body.append(statement)
        if len(body) == len(updated.body):
            return updated
        footer = [*pending, *updated.footer]
        if not body and isinstance(updated, cst.IndentedBlock):
            body = [cst.SimpleStatementLine([cst.Pass()])]  # never leave a block empty
        return updated.with_changes(body=body, footer=footer)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        return self._block(updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return self._block(updated_node)


def revert(module: cst.Module) -> tuple[cst.Module, list[tuple[str, str]]]:
    """``module`` without the inserted calls (and import, when unused now), and which calls
    went, as (kind, optimizer source)."""
    aliases = runtime_aliases(module)
    if not aliases:
        return module, []
    calls = _Remover(aliases, drop_import=False)
    module = module.visit(calls)
    # Two more walks of the whole tree (names still used, imports to drop) are only needed when
    # the text leaves a doubt: each of our import lines holds the alias and the module name
    # once, so finding no other occurrence proves the answer without a walk.
    code = module.code
    ours = [a for statement in module.body if (a := import_alias(statement)) in aliases]
    maybe_used = {a for a in aliases if len(re.findall(rf"\b{a}\b", code)) > ours.count(a)}
    still_used = {
        name
        for statement in module.body
        if import_alias(statement) is None
        for name in _names(statement) & maybe_used
    }
    imports = _Remover(aliases - still_used, drop_import=True)
    if not imports.aliases:
        return module, calls.calls
    if code.count(inserted.RUNTIME_MODULE) == len(ours):  # no import of the runtime below top level
        return imports._block(module), calls.calls
    return module.visit(imports), calls.calls


class _Names(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def _names(node: cst.CSTNode) -> set[str]:
    """Every identifier written in ``node``."""
    visitor = _Names()
    node.visit(visitor)
    return visitor.names
