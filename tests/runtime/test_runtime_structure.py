"""The runtime's shape: no import cycles, rules that do not know the registry, and an FX path that
reads the runtime only through its public or explicitly internal modules.

The import graph is built from the source with `ast`, not by importing anything: an edge
A -> B means A's code imports B, at module level or inside a function (lazy imports count),
including `importlib.import_module("...")` and `__import__("...")` with a literal name.
`from P import name` is an edge to `P.name` when that is a module, else to `P`. Importing
`P.M` also runs `P/__init__.py` first, but that implicit step is not an edge: a package's
`__init__` re-exporting its submodules is not a dependency the submodules choose.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import xgrad_rewrite

PACKAGE_DIR = Path(xgrad_rewrite.__file__).parent
CHECKED = ("xgrad_rewrite.runtime", "xgrad_rewrite.fx")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def in_checked(name: str) -> bool:
    return any(name == c or name.startswith(c + ".") for c in CHECKED)


def known(name: str) -> str | None:
    """The longest prefix of `name` that is one of our modules (None outside xgrad_rewrite)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in MODULES:
            return candidate
    return None


def imported_names(module: str, tree: ast.AST) -> Iterator[str]:
    """Every module name `module` imports, anywhere in its code."""
    is_package = MODULES[module].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                if isinstance(arg.value, str):
                    yield arg.value


def build_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {known(name) for name in imported_names(module, tree)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = build_graph()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_the_modules_and_their_lazy_imports():
    """The walker itself: it finds the packages, function-level and importlib imports."""
    assert "xgrad_rewrite.runtime.api" in GRAPH
    assert "xgrad_rewrite.fx.predictive" in GRAPH
    assert "xgrad_rewrite.fx" in GRAPH["xgrad_rewrite.runtime"]  # importlib, in __getattr__
    assert "xgrad_rewrite.runtime.rules.thirdparty" in GRAPH["xgrad_rewrite.runtime.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_runtime_and_fx_have_no_import_cycle():
    """No runtime or FX module imports one that imports it back, directly or transitively."""
    ours = [c for c in cycles(GRAPH) if any(in_checked(m) for m in c)]
    assert ours == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in ours)


RULES = "xgrad_rewrite.runtime.rules"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(RULES)))
def test_rules_do_not_know_the_registry(module):
    """Rules define rules: no rules module imports the registry, the API or the runtime package."""
    forbidden = {
        "xgrad_rewrite.runtime",
        "xgrad_rewrite.runtime.api",
        "xgrad_rewrite.runtime.registry",
    }
    assert not GRAPH[module] & forbidden


def test_importing_the_runtime_has_no_hidden_side_effect():
    """After `import xgrad_rewrite.runtime` (and the FX path) the registry holds exactly the
    built-in table (nothing registered itself on import) and `GradScaler.step` is torch's own."""
    code = textwrap.dedent(
        """
        import torch
        step = torch.amp.GradScaler.step
        import xgrad_rewrite.runtime as xg, xgrad_rewrite.fx
        from xgrad_rewrite.runtime import registry
        from xgrad_rewrite.runtime.rules import table
        print(registry._RULES == dict(table.builtin()), torch.amp.GradScaler.step is step)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("xgrad_rewrite.fx")))
def test_fx_reads_the_runtime_only_through_its_internal_module(module):
    """The FX path imports `xgrad_rewrite.runtime.internal`, no other runtime module."""
    runtime = {m for m in GRAPH[module] if m.startswith("xgrad_rewrite.runtime")}
    assert runtime <= {"xgrad_rewrite.runtime.internal"}
