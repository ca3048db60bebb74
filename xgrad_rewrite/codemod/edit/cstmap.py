"""Which libcst node holds each :mod:`ast` statement, so slots found on the ast can be
filled in libcst's tree (which keeps every byte).

Both trees come from the same text and list statements in the same order; they differ only in
grouping: libcst keeps ``a(); b()`` as one ``SimpleStatementLine`` with two small statements,
and an ``elif`` as an ``If`` in the ``orelse`` of the one before. One parallel walk pairs them.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import libcst as cst

# id(ast statement) -> (the libcst node in its block: a statement line, a one-line suite or a
# compound statement; the index of the small statement in it, None for a compound statement)
Location = tuple[cst.CSTNode, int | None]


def locate(module: cst.Module, tree: ast.Module) -> dict[int, Location]:
    out: dict[int, Location] = {}
    _block(module.body, tree.body, out)
    return out


def _block(
    nodes: Sequence[cst.CSTNode], statements: list[ast.stmt], out: dict[int, Location]
) -> None:
    index = 0
    for node in nodes:
        if isinstance(node, cst.SimpleStatementLine):
            for small in range(len(node.body)):
                out[id(statements[index])] = (node, small)
                index += 1
        else:
            out[id(statements[index])] = (node, None)
            _compound(node, statements[index], out)
            index += 1
    if index != len(statements):
        raise AssertionError("libcst and ast disagree on the statements of a block")


def _suite(body: cst.BaseSuite, statements: list[ast.stmt], out: dict[int, Location]) -> None:
    if isinstance(body, cst.SimpleStatementSuite):
        for small, statement in enumerate(statements):
            out[id(statement)] = (body, small)
    else:
        assert isinstance(body, cst.IndentedBlock)
        _block(body.body, statements, out)


def _else(orelse: cst.CSTNode | None, statements: list[ast.stmt], out: dict[int, Location]) -> None:
    if isinstance(orelse, cst.If):  # elif: the ast has it as the only statement of orelse
        _compound(orelse, statements[0], out)
    elif isinstance(orelse, cst.Else):
        _suite(orelse.body, statements, out)


def _compound(node: cst.CSTNode, statement: ast.stmt, out: dict[int, Location]) -> None:
    if isinstance(node, (cst.If, cst.For, cst.While)):
        _suite(node.body, statement.body, out)  # type: ignore[attr-defined]
        _else(node.orelse, statement.orelse, out)  # type: ignore[attr-defined]
    elif isinstance(node, (cst.With, cst.FunctionDef, cst.ClassDef)):
        _suite(node.body, statement.body, out)  # type: ignore[attr-defined]
    elif isinstance(node, (cst.Try, cst.TryStar)):
        assert isinstance(statement, (ast.Try, getattr(ast, "TryStar", ast.Try)))
        _suite(node.body, statement.body, out)
        for handler, ast_handler in zip(node.handlers, statement.handlers, strict=True):
            _suite(handler.body, ast_handler.body, out)
        _else(node.orelse, statement.orelse, out)
        if node.finalbody is not None:
            _suite(node.finalbody.body, statement.finalbody, out)
    elif isinstance(node, cst.Match):
        assert isinstance(statement, ast.Match)
        for case, ast_case in zip(node.cases, statement.cases, strict=True):
            _suite(case.body, ast_case.body, out)
