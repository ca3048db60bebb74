"""The diagnostics registry is the one list of codes: README's table and every emitter agree."""

from __future__ import annotations

import ast
import pathlib
import re

from xgrad_rewrite.codemod import diagnostics as codes

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (XG\d{3}) \| (\w+) \| (.*) \|$")


def _readme_rows() -> dict[str, tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| code | severity | meaning |") :].split("\n\n", 1)[0]
    return {m[1]: (m[2], m[3]) for line in table.splitlines() if (m := ROW.match(line))}


def test_readme_table_is_the_registry():
    expected = {c.code: (c.severity, c.help) for c in codes.CODES.values()}
    assert _readme_rows() == expected


def test_no_code_is_written_as_a_literal_outside_the_registry():
    codemod = ROOT / "xgrad_rewrite" / "codemod"
    for path in codemod.rglob("*.py"):
        if path.name == "diagnostics.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.fullmatch(r"XG\d{3}", node.value), f"{path.name}: {node.value}"


def test_every_template_formats_with_its_fields():
    for code in codes.CODES.values():
        fields = set(re.findall(r"{(\w+)}", code.template))
        text = codes.message(code.code, **{f: f"<{f}>" for f in fields})
        assert "{" not in text and code.severity in ("info", "warning", "error")
