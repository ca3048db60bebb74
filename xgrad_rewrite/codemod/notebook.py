"""Notebooks: the codemod over a ``.ipynb``'s code cells, JSON text to JSON text.

Decision: the code cells are patched as **one program** (in notebook order), not cell by cell,
because notebooks often split a training step across cells (``loss.backward()`` in one,
``optimizer.step()`` in the next) and the codemod needs to see both. Each cell is preceded by a
boundary comment, the text goes through :func:`xgrad_rewrite.codemod.rewrite`, and the result is
split back at the comments. A line inserted just above a boundary belongs to the cell below it
(the codemod only ever inserts a call *before* the statement it guards).

IPython syntax (``%matplotlib inline``, ``!pip install x``, ``x = !ls``, ``obj?``) is masked with
a ``pass`` placeholder carrying a token, and put back afterwards (black's jupyter mode does the
same); cells run by a non-Python cell magic (``%%bash``, ``%%html``...) are left out entirely.

The import goes at the end of the import block holding ``import torch`` in the first code cell
that imports torch (or stays where an earlier run put it), or into a new code cell in front of
the first code cell (id ``xgrad-rewrite-import``). Only ``source`` fields change: outputs,
metadata, ids and the JSON layout (indent, key order, ``ensure_ascii``, trailing newline) stay as
they were, and a notebook with nothing to patch is returned unchanged.

:func:`rewrite_notebook` is a front end giving the codemod's own ``Result``, so the CLI runs
scripts and notebooks down one path; what only a notebook has (which cell a line is in, the
cells a rewrite changed, for a per-cell diff) is read back from notebook texts by
:func:`cell_lines` and :func:`changed_cells`. The codemod's import is recognised through
:mod:`xgrad_rewrite.codemod.inserted`, like every other inserted line.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.api import Options, ParseError, Result

IMPORT_CELL_ID = "xgrad-rewrite-import"
BOUNDARY = "# xgrad-rewrite: cell {} #"
# Cell magics whose body is Python (only the %% line is masked); any other runs another language.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
_MAGIC = re.compile(
    r"""^\s*(?:[%!]|[\w.]+\s*=\s*[%!])  # %line, !shell, x = !shell, x = %magic
        |^[^#'"]*\?\s*$                  # obj? and obj?? help
    """,
    re.VERBOSE,
)
_TORCH_IMPORT = re.compile(r"^(?:import\s+torch\b|from\s+torch\b)")


class CellParseError(ParseError):
    """A code cell does not parse; ``line`` is counted inside cell number ``cell`` (1-based)."""

    def __init__(self, message: str, cell: int, line: int, column: int) -> None:
        super().__init__(message, line, column)
        self.cell = cell


@dataclass(frozen=True)
class CellChange:
    """One code cell whose source changed (``cell``: 1-based position in the new notebook)."""

    cell: int
    old: str
    new: str


def _where(table: tuple[tuple[int, int], ...], line: int) -> tuple[int, int]:
    return table[line - 1] if 0 < line <= len(table) else (0, line)


def rewrite_notebook(text: str, options: Options | None = None) -> Result:
    """Patch (or with ``options.revert`` unpatch) the code cells of the notebook ``text``.

    The same :class:`~xgrad_rewrite.codemod.api.Result` as :func:`xgrad_rewrite.codemod.rewrite`
    gives for a script, its lines (diagnostics, steps) being lines of the program that the
    returned text's code cells make: :func:`cell_lines` of ``result.text`` names their cell and
    line. Raises :class:`ParseError` (:class:`CellParseError` for a cell)."""
    from xgrad_rewrite.codemod import rewrite

    options = options or Options()
    nb = _load(text)
    cells = nb["cells"]
    if not _is_python(nb):
        return Result(text, False)
    program = _Program.of(cells)
    if not program.sources:
        return Result(text, False)
    program.check()
    try:
        result = rewrite(program.text, options)
        new_text = result.text  # made here: libcst may reject what ast accepted
    except ParseError as e:  # still say which cell
        cell, line = _where(program.line_table(), e.line)
        raise CellParseError(e.message, cell, line, e.column) from e
    sources = program.sources
    new_sources = program.split(new_text)
    if options.revert:
        new_sources = {i: _drop_import(src) for i, src in new_sources.items()}
        cells_after, originals, new_table = cells, sources, program.new_line_table
    else:
        cells_after, new_sources, originals, move = _place_import(cells, sources, new_sources)
        new_table = _moved(program.new_line_table, *move)

    new_cells = []
    position = {}  # index in cells_after -> 1-based position in new_cells
    for i, cell in enumerate(cells_after):
        src = new_sources.get(i)
        old = originals.get(i, "")
        if options.revert and src == "" and _is_import_cell(cell, old):
            continue  # the cell we added
        if src is not None and src != old:
            cell = dict(cell, source=_as_stored(cell["source"], src))
        new_cells.append(cell)
        position[i] = len(new_cells)
    new = _dump(dict(nb, cells=new_cells), text) if new_cells != cells else text
    if not result.diagnostics and not result.steps:
        return Result(new, new != text)
    # The codemod's lines -> (cell, line) of the new notebook -> lines of its program.
    program_line = {at: n for n, at in enumerate(_Program.of(new_cells).line_table(), 1)}

    def line_of(line: int) -> int:
        cell, n = _where(new_table, line)
        return program_line.get((position.get(cell - 1, cell), n), line)

    def maybe(line: int | None) -> int | None:
        return None if line is None else line_of(line)

    return Result(
        new,
        new != text,
        tuple(replace(d, line=line_of(d.line)) for d in result.diagnostics),
        tuple(
            replace(
                s,
                backward_line=line_of(s.backward_line),
                step_line=line_of(s.step_line),
                predict_line=maybe(s.predict_line),
                restore_line=maybe(s.restore_line),
            )
            for s in result.steps
        ),
    )


def cell_lines(text: str) -> Callable[[int], tuple[int, int]]:
    """For the notebook ``text``: a line of its program (as :func:`rewrite_notebook` reports
    them) to ``(cell, line in the cell)``, both 1-based (cells counted with markdown ones)."""
    table = _Program.of(_load(text)["cells"]).line_table()
    return lambda line: _where(table, line)


def check_parses(text: str) -> None:
    """Raise :class:`CellParseError` if a code cell of the notebook ``text`` does not parse
    (:class:`ParseError` if it is no notebook)."""
    nb = _load(text)
    if _is_python(nb):
        _Program.of(nb["cells"]).check()


def changed_cells(old: str, new: str) -> tuple[CellChange, ...]:
    """The code cells whose source differs from notebook ``old`` to notebook ``new``, for a
    per-cell diff. :func:`rewrite_notebook` only changes sources and adds (or, reverting,
    removes) one import cell: a cell added or removed is compared with an empty one and numbered
    where it is (would be) in ``new``."""
    a, b = _load(old)["cells"], _load(new)["cells"]
    changes = []
    seen = 0  # cells of ``new`` before this pair
    for i, j in _pair(a, b):
        old_cell = None if i is None else a[i]
        new_cell = None if j is None else b[j]
        before = "" if old_cell is None else _source(old_cell)
        after = "" if new_cell is None else _source(new_cell)
        cell = new_cell if new_cell is not None else old_cell
        if cell is not None and cell.get("cell_type") == "code" and before != after:
            changes.append(CellChange(seen + 1, before, after))
        seen += j is not None
    return tuple(changes)


def _pair(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[tuple[int | None, int | None]]:
    """Indices of the cells of ``a`` and ``b`` side by side, in order. When one list has one
    cell more, that cell (an import cell if any fits) is set against None; any other difference
    in length, not one this module makes, pairs by position."""
    if abs(len(a) - len(b)) != 1:
        return [
            (n if n < len(a) else None, n if n < len(b) else None)
            for n in range(max(len(a), len(b)))
        ]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)

    def fits(k: int) -> int:  # how many cells keep their outputs/metadata with k left out
        rest = longer[:k] + longer[k + 1 :]
        return sum(_shape(x) == _shape(y) for x, y in zip(rest, shorter, strict=True))

    imports = [k for k, c in enumerate(longer) if _is_import_cell(c, _source(c))]
    extra = max(imports or range(len(longer)), key=fits)
    pairs: list[tuple[int | None, int | None]] = [
        (k, k if k < extra else k - 1) for k in range(len(longer)) if k != extra
    ]
    pairs.insert(extra, (extra, None))
    return pairs if longer is a else [(y, x) for x, y in pairs]


def _shape(cell: dict[str, Any]) -> str:
    """A cell without its source: what a rewrite leaves as it was."""
    return json.dumps({k: v for k, v in cell.items() if k != "source"}, sort_keys=True)


def _load(text: str) -> dict[str, Any]:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"not valid notebook JSON: {e.msg}", e.lineno, e.colno - 1) from e
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ParseError("not a Jupyter notebook (no 'cells' list)", 1, 0)
    return nb


def _is_python(nb: dict[str, Any]) -> bool:
    meta = nb.get("metadata") or {}
    language = (meta.get("kernelspec") or {}).get("language") or (
        meta.get("language_info") or {}
    ).get("name")
    return language in (None, "python", "python3")


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _as_stored(original: Any, text: str) -> Any:
    """Back to the form the notebook used: a list of lines (nbformat) or one string."""
    return text.splitlines(keepends=True) if isinstance(original, list) else text


def _is_our_import(line: str) -> bool:
    """Whether ``line`` is the codemod's import at the top level of a cell. Only an alias the
    codemod chooses counts (:func:`inserted.line_import_alias`): a user's own
    ``import xgrad_rewrite.runtime as xg`` is theirs, never moved or removed."""
    return not line[:1].isspace() and inserted.line_import_alias(line) is not None


def _is_import_cell(cell: dict[str, Any], source: str) -> bool:
    return cell.get("id") == IMPORT_CELL_ID or _is_our_import(source)


def _drop_import(src: str) -> str:
    lines = src.splitlines(keepends=True)
    kept = [ln for ln in lines if not _is_our_import(ln)]
    if len(kept) == len(lines):
        return src
    text = "".join(kept)
    if _is_our_import(lines[-1]) and not lines[-1].endswith("\n") and text:
        text = text[:-1] if text.endswith("\n") else text  # the import was the unterminated tail
    return text


_Move = tuple[tuple[int, int] | None, tuple[int, int] | None, int | None]


def _place_import(
    cells: list[dict[str, Any]], sources: dict[int, str], new_sources: dict[int, str]
) -> tuple[list[dict[str, Any]], dict[int, str], dict[int, str], _Move]:
    """Move the runtime import from where the codemod put it (the top of the joined program)
    to where a notebook reader expects it: where it was before, else after the first
    ``import torch``, else a new code cell in front of the first code cell.

    Returns the cells, their new sources, their original sources ("" for a new cell) and the
    move for :func:`_moved`: (cell index, line) removed, (cell index, line) inserted, index of
    a new cell.
    """
    found = [
        (i, n + 1, ln)
        for i, s in new_sources.items()
        for n, ln in enumerate(s.splitlines())
        if _is_our_import(ln)
    ]
    if not found:
        return cells, new_sources, sources, (None, None, None)
    removed = found[0][:2]
    line = found[0][2].rstrip()
    placed = {i: _drop_import(s) for i, s in new_sources.items()}
    before = next(
        (
            (i, n)
            for i, s in sources.items()
            for n, ln in enumerate(s.splitlines(keepends=True))
            if _is_our_import(ln)
        ),
        None,
    )
    if before is not None:  # keep it where the notebook had it
        i, n = before
        old_lines = sources[i].splitlines()
        at = 0
        if n:  # after the same occurrence of the same line as before
            previous = old_lines[n - 1]
            nth = old_lines[:n].count(previous)
            hits = [k for k, ln in enumerate(placed[i].splitlines()) if ln == previous]
            at = hits[nth - 1] + 1 if len(hits) >= nth else 0
        move = (removed, (i, at + 1), None)
        return cells, {**placed, i: _insert_line(placed[i], at, line)}, sources, move
    for i, src in placed.items():
        end = _torch_import_end(src)
        if end is not None:
            move = (removed, (i, end + 1), None)
            return cells, {**placed, i: _insert_line(src, end, line)}, sources, move
    first = min(placed)
    new_cell: dict[str, Any] = {"cell_type": "code", "execution_count": None}
    if any("id" in c for c in cells):
        new_cell["id"] = IMPORT_CELL_ID
    new_cell.update(metadata={}, outputs=[], source=[line])
    shift = {(j + 1 if j >= first else j): s for j, s in placed.items()}
    originals = {(j + 1 if j >= first else j): s for j, s in sources.items()}
    shift[first], originals[first] = line, ""
    move = (removed, (first, 1), first)
    return [*cells[:first], new_cell, *cells[first:]], shift, originals, move


def _moved(
    table: tuple[tuple[int, int], ...],
    removed: tuple[int, int] | None,
    inserted: tuple[int, int] | None,
    new_cell: int | None,
) -> tuple[tuple[int, int], ...]:
    """``table`` (program line -> 1-based cell, line) after :func:`_place_import`'s move, so
    ``-v`` names the lines of the notebook as written."""
    if removed is None or inserted is None:
        return table
    out = []
    for cell, line in table:
        index = cell - 1
        if (index, line) == removed:
            out.append((inserted[0] + 1, inserted[1]))
            continue
        if index == removed[0] and line > removed[1]:
            line -= 1
        if new_cell is not None and index >= new_cell:
            index += 1
        if index == inserted[0] and line >= inserted[1]:
            line += 1
        out.append((index + 1, line))
    return tuple(out)


def _insert_line(src: str, at: int, line: str) -> str:
    """``src`` with ``line`` inserted before its line number ``at`` (0-based)."""
    lines = src.splitlines(keepends=True)
    newline = "\r\n" if "\r\n" in src else "\n"
    if not lines:
        return line  # a cell of its own, its last line unterminated like Jupyter writes it
    if at >= len(lines):
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
            return "".join(lines) + line  # Jupyter's last line carries no newline
        return "".join(lines) + line + newline
    lines.insert(at, line + newline)
    return "".join(lines)


def _torch_import_end(src: str) -> int | None:
    """Last line (1-based) of the run of top-level imports that first imports torch, if any."""
    masked, _ = _mask(src)
    try:
        tree = ast.parse(masked)
    except SyntaxError:
        for n, line in enumerate(src.splitlines(), 1):
            if _TORCH_IMPORT.match(line):
                return n
        return None
    end = None
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            if end is not None:
                break  # the end of the import block that holds ``import torch``
            continue
        if end is not None:
            end = node.end_lineno
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        if any(n == "torch" or n.startswith("torch.") for n in names):
            end = node.end_lineno
    return end


def _mask(src: str) -> tuple[str, dict[str, str]] | tuple[None, dict[str, str]]:
    """Replace IPython-only lines by ``pass  # token``; ``None`` for a non-Python cell.

    A cell that parses as Python is taken as it is (``% b`` may be a modulo continuing a line).
    """
    try:
        ast.parse(src)
        return src, {}
    except SyntaxError:
        pass
    lines = src.splitlines(keepends=True)
    masks: dict[str, str] = {}
    out = []
    continued = False
    for n, line in enumerate(lines):
        body = line.rstrip("\r\n")
        end = line[len(body) :]
        if n == 0 and body.lstrip().startswith("%%"):
            name = body.lstrip()[2:].split(maxsplit=1)[0] if body.strip() != "%%" else ""
            if name not in PYTHON_CELL_MAGICS:
                return None, {}
        if continued or (n == 0 and body.lstrip().startswith("%%")) or _MAGIC.match(body):
            token = f"xgrad-rewrite: magic {len(masks)} #"
            indent = body[: len(body) - len(body.lstrip())]
            masks[token] = body
            out.append(f"{indent}pass  # {token}{end}")
            continued = body.endswith("\\")
        else:
            out.append(line)
    return "".join(out), masks


def _unmask(src: str, masks: dict[str, str]) -> str:
    if not masks:
        return src
    out = []
    for line in src.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        token = body.partition("  # ")[2]
        out.append(masks[token] + line[len(body) :] if token in masks else line)
    return "".join(out)


class _Program:
    """The code cells joined into one Python text, and the way back to cells."""

    @classmethod
    def of(cls, cells: list[dict[str, Any]]) -> _Program:
        return cls(
            cells, {i: _source(c) for i, c in enumerate(cells) if c.get("cell_type") == "code"}
        )

    def __init__(self, cells: list[dict[str, Any]], sources: dict[int, str]) -> None:
        self.cells = cells
        self.sources = sources
        self.masked: dict[int, str] = {}
        self.masks: dict[int, dict[str, str]] = {}
        self.terminated: dict[int, bool] = {}
        parts = []
        for i, src in sources.items():
            masked, masks = _mask(src)
            if masked is None:
                continue  # %%bash and friends: not Python, not ours
            self.masked[i], self.masks[i] = masked, masks
            self.terminated[i] = masked.endswith(("\n", "\r")) or not masked
            parts.append(BOUNDARY.format(i) + "\n")
            parts.append(masked if self.terminated[i] else masked + "\n")
        self.text = "".join(parts)
        self.new_line_table: tuple[tuple[int, int], ...] = ()

    def check(self) -> None:
        """Raise :class:`CellParseError` where the joined program does not parse."""
        try:
            ast.parse(self.text)
        except SyntaxError as e:
            cell, line = _where(self.line_table(), e.lineno or 1)
            raise CellParseError(e.msg, cell, line, max((e.offset or 1) - 1, 0)) from e

    def line_table(self) -> tuple[tuple[int, int], ...]:
        table = []
        for i, masked in self.masked.items():
            table.append((i + 1, 0))
            table.extend((i + 1, n) for n in range(1, len(masked.splitlines()) + 1))
        return tuple(table)

    def split(self, text: str) -> dict[int, str]:
        """The codemod's output back into cell sources (unmasked, original line ends)."""
        order = list(self.masked)
        lines = text.splitlines(keepends=True)
        markers = {BOUNDARY.format(i): i for i in order}
        segments: dict[int, list[str]] = {i: [] for i in order}
        lead: list[str] = []
        current: int | None = None
        seen = []
        for line in lines:
            key = line.rstrip("\r\n")
            if key in markers:
                current = markers[key]
                seen.append(current)
            elif current is None:
                lead.append(line)  # anything the codemod put above the first cell is the first's
            else:
                segments[current].append(line)
        if seen != order:
            raise ParseError("the codemod moved a notebook cell boundary", 1, 0)
        segments[order[0]][:0] = lead
        # A line inserted at the end of a cell guards the next cell's first statement.
        for a, b in zip(order, order[1:], strict=False):
            old = self.masked[a].splitlines(keepends=True)
            new = segments[a]
            ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
            if ops and ops[-1][0] == "insert" and ops[-1][1] == len(old):
                j1 = ops[-1][3]
                segments[b][:0] = new[j1:]
                del new[j1:]
        table = []
        out = {}
        for i in order:
            table.append((i + 1, 0))
            table.extend((i + 1, n) for n in range(1, len(segments[i]) + 1))
            src = "".join(segments[i])
            if not self.terminated[i] and src.endswith("\n"):
                src = src[:-1]
            out[i] = _unmask(src, self.masks[i])
        self.new_line_table = tuple(table)
        return out


def _dump(nb: dict[str, Any], original: str) -> str:
    """Serialise ``nb`` in the layout ``original`` was written in (nbformat: indent 1)."""
    match = re.match(r"\{\r?\n( *)\S", original.lstrip())
    indent = len(match.group(1)) if match else None
    trailing = original[len(original.rstrip()) :]
    reference = json.loads(original)
    for ensure_ascii in (False, True):
        for separators in ((",", ": "), (", ", ": "), (",", ":")):
            layout = {"indent": indent, "ensure_ascii": ensure_ascii, "separators": separators}
            if json.dumps(reference, **layout) + trailing == original:
                return json.dumps(nb, **layout) + trailing
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"  # nbformat's own layout
