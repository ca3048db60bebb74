"""The codemod's layering rule, checked: analysis on ``ast`` only, libcst only in ``edit``."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

CODEMOD = pathlib.Path(__file__).resolve().parents[2] / "xgrad_rewrite" / "codemod"


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_analysis_module_imports_libcst_or_the_edit_package():
    for path in sorted((CODEMOD / "analysis").glob("*.py")):
        for module in _imported_modules(path):
            assert not module.startswith("libcst"), f"{path.name} imports {module}"
            assert not module.startswith("xgrad_rewrite.codemod.edit"), (
                f"{path.name} imports {module}"
            )


def test_using_the_analysis_never_loads_libcst():
    code = (
        "import sys, ast\n"
        "from xgrad_rewrite.codemod.analysis.find import Finder, find\n"
        "from xgrad_rewrite.codemod.analysis.calls import plan_calls\n"
        "from xgrad_rewrite.codemod.api import Options\n"
        "src = 'for x, y in loader:\\n    loss = model(x).sum()\\n    loss.backward()\\n"
        "    optimizer.step()\\n'\n"
        "finder = Finder(ast.parse(src), src)\n"
        "assert plan_calls(finder, Options()).calls\n"
        "print('libcst' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_edit_package_and_the_pipeline_import_libcst():
    allowed = {"edit", "transform.py", "__init__.py", "inserted.py"}
    for path in sorted(CODEMOD.rglob("*.py")):
        relative = path.relative_to(CODEMOD).parts
        if relative[0] in allowed:
            continue
        assert not any(m.startswith("libcst") for m in _imported_modules(path)), path
