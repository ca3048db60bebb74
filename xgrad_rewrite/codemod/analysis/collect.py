"""One walk over the tree that gathers every node the analysis asks about (in source order),
each node's parent, and the block each statement sits in."""

from __future__ import annotations

import ast

from xgrad_rewrite.codemod.analysis.blocks import FUNCTIONS, Block


class Collected:
    def __init__(self) -> None:
        self.parents: dict[ast.AST, ast.AST] = {}
        self.blocks: dict[ast.stmt, Block] = {}
        self.calls: list[ast.Call] = []
        self.attributes: list[ast.Attribute] = []
        self.fors: list[ast.For | ast.AsyncFor] = []
        self.exprs: list[ast.Expr] = []
        self.assigns: list[ast.Assign] = []
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.names: set[str] = set()  # every identifier written in the file


_KINDS: dict[type, str] = {
    ast.Call: "calls",
    ast.Attribute: "attributes",
    ast.For: "fors",
    ast.AsyncFor: "fors",
    ast.Expr: "exprs",
    ast.Assign: "assigns",
    ast.FunctionDef: "functions",
    ast.AsyncFunctionDef: "functions",
}


def collect(tree: ast.AST) -> Collected:
    """Depth first, in source order (what libcst visitors gave, and what pairing relies on)."""
    out = Collected()
    parents, blocks, names = out.parents, out.blocks, out.names
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        kind = _KINDS.get(type(node))
        if kind is not None:
            getattr(out, kind).append(node)
        name = _identifier(node)
        if name is not None:
            names.add(name)
        children: list[ast.AST] = []
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                for child in value:
                    if isinstance(child, ast.AST):
                        children.append(child)
                        if isinstance(child, ast.stmt):
                            blocks[child] = (node, field)
            elif isinstance(value, ast.AST):
                children.append(value)
        for child in children:
            parents[child] = node
        stack.extend(reversed(children))
    return out


def _identifier(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, (*FUNCTIONS, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, ast.keyword):
        return node.arg
    if isinstance(node, ast.alias):
        return node.asname or node.name.split(".", 1)[0]
    if isinstance(node, ast.ExceptHandler):
        return node.name
    return None
