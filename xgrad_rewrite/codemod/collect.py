"""One walk over the module that gathers every node the finder asks about (in source order).

libcst matchers' ``findall`` walks the whole tree per question; a training script asks a
dozen of them, so the codemod walks once here and filters the lists.
"""

from __future__ import annotations

import libcst as cst


class Collected(cst.CSTVisitor):
    def __init__(self) -> None:
        self.calls: list[cst.Call] = []
        self.attributes: list[cst.Attribute] = []
        self.fors: list[cst.For] = []
        self.exprs: list[cst.Expr] = []
        self.assigns: list[cst.Assign] = []
        self.functions: list[cst.FunctionDef] = []
        self.names: set[str] = set()

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
