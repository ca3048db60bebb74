"""codemod/analysis/scopes.py: the bindings a name is read from and what an imported name stands for
(the part of libcst's ScopeProvider the analysis used), on small programs."""

from __future__ import annotations

import ast
import textwrap

from xgrad_rewrite.codemod.analysis.collect import collect
from xgrad_rewrite.codemod.analysis.scopes import Scopes


def _reads(source: str, name: str) -> tuple[Scopes, list[ast.Name]]:
    tree = ast.parse(textwrap.dedent(source))
    scopes = Scopes(tree, collect(tree).parents)
    loads = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)
    ]
    return scopes, sorted(loads, key=lambda n: (n.lineno, n.col_offset))


def _kinds(bindings: list[ast.AST]) -> list[str]:
    return [type(b).__name__ for b in bindings]


def test_a_parameter_shadows_the_module_level_optimizer() -> None:
    scopes, (inside, outside) = _reads(
        """
        opt = Adam(params)
        def train(opt):
            opt.step()
        opt.step()
        """,
        "opt",
    )
    assert _kinds(scopes.bindings(inside)) == ["arg"]
    assert _kinds(scopes.bindings(outside)) == ["Assign"]


def test_free_names_come_from_the_enclosing_function_not_the_class_body() -> None:
    scopes, (read,) = _reads(
        """
        opt = SGD(params)
        class Trainer:
            opt = None
            def fit(self):
                def step():
                    return opt
                return step
        """,
        "opt",
    )
    (binding,) = scopes.bindings(read)
    assert isinstance(binding, ast.Assign) and binding.lineno == 2


def test_global_declarations_bind_at_module_level_also_when_written_there() -> None:
    scopes, (read,) = _reads(
        """
        global opt
        def build():
            global opt
            opt = Adam(params)
        def train():
            opt.step()
        """,
        "opt",
    )
    (binding,) = scopes.bindings(read)  # the module-level `global` must not loop forever
    assert isinstance(binding, ast.Assign) and binding.lineno == 5


def test_comprehension_targets_do_not_bind_in_the_function() -> None:
    scopes, reads = _reads(
        """
        opt = Adam(params)
        def train():
            names = [opt for opt in range(3)]
            opt.step()
        """,
        "opt",
    )
    assert _kinds(scopes.bindings(reads[-1])) == ["Assign"]


def test_qualified_names_follow_import_aliases_in_their_scope() -> None:
    tree = ast.parse(
        textwrap.dedent(
            """
            import torch.optim as optim
            from torch.optim import AdamW as W
            import torch
            a = optim.Adam(p)
            b = W(p)
            c = torch.optim.SGD(p)
            def f():
                from lion_pytorch import Lion
                d = Lion(p)
            e = Lion(p)
            """
        )
    )
    scopes = Scopes(tree, collect(tree).parents)
    calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: n.lineno)
    assert [scopes.qualified_names(c.func) for c in calls] == [
        {"torch.optim.Adam"},
        {"torch.optim.AdamW"},
        {"torch.optim.SGD"},
        {"lion_pytorch.Lion"},
        set(),  # imported only inside f
    ]


def test_a_global_declared_at_module_level_and_never_bound_has_no_binding() -> None:
    scopes, (read,) = _reads(
        """
        global opt
        def train():
            opt.step()
        """,
        "opt",
    )
    assert scopes.bindings(read) == []  # and does not loop between module and module
