"""Line/column positions and source text of :mod:`ast` nodes, as a user counts them.

ast columns are UTF-8 byte offsets; diagnostics report characters (what an editor shows), the
same as libcst did. Lines are split the way Python's tokenizer splits them (``\\n``, ``\\r\\n``
or ``\\r``), not the way ``str.splitlines`` does (form feeds and other separators are not line
breaks in Python source).
"""

from __future__ import annotations

import ast
import re

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


class Positions:
    def __init__(self, source: str) -> None:
        self.lines = _LINE.findall(source)

    def column(self, line: int, offset: int) -> int:
        """The character column of byte ``offset`` on 1-based ``line``."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        if text.isascii():
            return offset
        return len(text.encode("utf-8")[:offset].decode("utf-8", "replace"))

    def start(self, node: ast.AST) -> tuple[int, int]:
        line = node.lineno  # type: ignore[attr-defined]
        return line, self.column(line, node.col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST) -> str:
        """The node's own source text (what ``ast.get_source_segment`` gives, without
        re-splitting the file for every call)."""
        line, column = self.start(node)
        end_line = node.end_lineno  # type: ignore[attr-defined]
        end_column = self.column(end_line, node.end_col_offset)  # type: ignore[attr-defined]
        if line == end_line:
            return self.lines[line - 1][column:end_column]
        parts = [self.lines[line - 1][column:], *self.lines[line : end_line - 1]]
        parts.append(self.lines[end_line - 1][:end_column])
        return "".join(parts)

    def starts_line(self, node: ast.AST) -> bool:
        """Whether only indentation comes before ``node`` on its first line (not ``a(); node``,
        not ``if x: node``)."""
        line, column = self.start(node)
        return not self.lines[line - 1][:column].strip()
