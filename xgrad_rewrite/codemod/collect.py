"""One walk over the module that gathers every node the finder asks about (in source order).

libcst matchers' ``findall`` walks the whole tree per question; a training script asks a
dozen of them, so the codemod walks once here and filters the lists.
"""

from __future__ import annotations

import libcst as cst


class Collected(cst.CSTVisitor):
    """Also records each node's parent (what ParentNodeProvider gives, without another walk)."""

    def __init__(self) -> None:
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self._stack: list[cst.CSTNode] = []
        self.calls: list[cst.Call] = []
        self.attributes: list[cst.Attribute] = []
        self.fors: list[cst.For] = []
        self.exprs: list[cst.Expr] = []
        self.assigns: list[cst.Assign] = []
        self.functions: list[cst.FunctionDef] = []
        self.names: set[str] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._stack:
            self.parents[node] = self._stack[-1]
        self._stack.append(node)
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)
        self._stack.pop()

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attributes.append(node)

    def visit_For(self, node: cst.For) -> None:
        self.fors.append(node)

    def visit_Expr(self, node: cst.Expr) -> None:
        self.exprs.append(node)

    def visit_Assign(self, node: cst.Assign) -> None:
        self.assigns.append(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.append(node)

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def collect(module: cst.Module) -> Collected:
    collected = Collected()
    module.visit(collected)
    return collected
