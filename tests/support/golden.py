"""The golden fixtures under ``fixtures/``: their names, how to read them, their options and
expected notes (see ``fixtures/README.md``)."""

from __future__ import annotations

import io
import json
import tokenize
from pathlib import Path

from support import FIXTURES
from xgrad_rewrite.codemod import Diagnostic, Options

NAMES = sorted(p.name.removesuffix(".in.py") for p in FIXTURES.glob("*.in.py"))


def read(path: Path) -> tuple[str, str]:
    """The text, decoded with the file's own encoding cookie, and that encoding."""
    raw = path.read_bytes()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    return raw.decode(encoding), encoding


def options_for(name: str) -> Options:
    path = FIXTURES / f"{name}.options.json"
    if not path.exists():
        return Options()
    data = json.loads(path.read_text())
    if "optimizers" in data:
        data["optimizers"] = tuple(data["optimizers"])
    return Options(**data)


def format_diagnostics(diagnostics: tuple[Diagnostic, ...]) -> str:
    """One ``LINE:COL: CODE message`` line each, as ``NAME.diagnostics.txt`` holds them."""
    return "".join(f"{d.line}:{d.column}: {d.code} {d.message}\n" for d in diagnostics)


def expected_diagnostics(name: str) -> str:
    """The notes a fixture must produce (line numbers in the output); none without the file."""
    path = FIXTURES / f"{name}.diagnostics.txt"
    return path.read_text(encoding="utf-8") if path.exists() else ""
