"""Patch one file: read bytes, rewrite, check the result, write bytes; report as plain text.

Scripts and notebooks take the same path; a :class:`Kind` holds the little that differs (the
codemod's front end, how to re-parse, how a line is named, how to diff), as black keeps
notebooks in its orchestration layer.

Runs in the CLI's process or in a worker process (``-j``), so everything it returns is a
picklable :class:`Outcome` with the messages already formatted; the CLI only prints them, in
the order of the files, whatever order the workers finish in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from xgrad_rewrite import files
from xgrad_rewrite.codemod.api import Options, ParseError, Result, StepReport
from xgrad_rewrite.report import WriteBack


@dataclass(frozen=True)
class Job:
    """What to do with one path (``-`` is stdin)."""

    path: str
    options: Options
    write_back: WriteBack  # STDOUT for "-" where a file would be written in place
    verbose: bool


@dataclass
class Outcome:
    """What happened to one path, with everything to print already formatted."""

    path: str
    changed: bool = False
    failed: bool = False
    diff: str = ""  # uncoloured unified diff (the CLI colours it)
    warnings: list[str] = field(default_factory=list)  # diagnostics and errors, for stderr
    details: list[str] = field(default_factory=list)  # -v only
    stdout: bytes | None = None  # for "-": the text to write to stdout


class UnstableRewrite(Exception):
    """The codemod's output does not parse, or a second pass would change it again."""


# A line as a Result reports it -> (line, cell): the cell (1-based) in a notebook, else None.
Where = Callable[[int], tuple[int, int | None]]


@dataclass(frozen=True)
class Kind:
    """What a script and a notebook do differently; all else is :func:`process`'s one path.

    ``rewrite`` is the codemod's front end; ``parse`` raises :class:`ParseError` for text that
    does not parse; ``lines`` gives the :data:`Where` of a result's line numbers; ``diff``
    makes the diff of two texts for one path.
    """

    rewrite: Callable[[str, Options], Result]
    parse: Callable[[str], object]
    lines: Callable[[Result], Where]
    diff: Callable[[str, str, str], str]


def _python_rewrite(text: str, options: Options) -> Result:
    from xgrad_rewrite.codemod import rewrite  # looked up per call: tests swap in a stand-in

    return rewrite(text, options)


def _python_parse(text: str) -> None:
    from xgrad_rewrite.codemod.transform import parse_ast  # the codemod's own ParseError

    parse_ast(text)


def _python_lines(result: Result) -> Where:
    return lambda line: (line, None)


def _python_diff(a: str, b: str, path: str) -> str:
    return unified_diff(a, b, _name("a", path), _name("b", path))


def _notebook_rewrite(text: str, options: Options) -> Result:
    from xgrad_rewrite.codemod.notebook import rewrite_notebook

    return rewrite_notebook(text, options)


def _notebook_parse(text: str) -> None:
    from xgrad_rewrite.codemod.notebook import check_parses

    check_parses(text)


def _notebook_lines(result: Result) -> Where:
    from xgrad_rewrite.codemod.notebook import cell_lines

    cells = cell_lines(result.text)

    def where(line: int) -> tuple[int, int | None]:
        cell, line = cells(line)
        return line, cell

    return where


def _notebook_diff(a: str, b: str, path: str) -> str:
    """One diff per changed code cell (``nb.ipynb:cell 3``), not one of the JSON."""
    from xgrad_rewrite.codemod.notebook import changed_cells

    return "".join(
        unified_diff(
            _terminated(change.old),  # a cell's last line has no newline by convention
            _terminated(change.new),
            _name("a", f"{path}:cell {change.cell}"),
            _name("b", f"{path}:cell {change.cell}"),
        )
        for change in changed_cells(a, b)
    )


PYTHON = Kind(_python_rewrite, _python_parse, _python_lines, _python_diff)
NOTEBOOK = Kind(_notebook_rewrite, _notebook_parse, _notebook_lines, _notebook_diff)


def kind_of(path: str) -> Kind:
    return NOTEBOOK if path != "-" and files.is_notebook(path) else PYTHON


def process(job: Job) -> Outcome:
    """Never raises for a bad file: a file that cannot be read or parsed is a failed Outcome."""
    out = Outcome(job.path)
    try:
        data = sys.stdin.buffer.read() if job.path == "-" else files.read_bytes(job.path)
    except OSError as e:
        out.failed = True
        out.warnings.append(f"{job.path}: error: cannot read: {e.strerror or e}")
        return out
    kind = kind_of(job.path)
    try:
        source = files.decode(data, notebook=kind is NOTEBOOK)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        out.failed = True
        out.warnings.append(f"{job.path}:1:0: error: cannot decode: {e}")
        return out
    try:
        new_text = _rewrite(job, kind, source.text, out)
    except ParseError as e:
        out.failed = True
        out.warnings.append(
            f"{_at(job.path, e.line, getattr(e, 'cell', None))}:{e.column}: error: {e.message}"
        )
        return out
    except UnstableRewrite as e:
        out.failed = True
        out.warnings.append(f"{job.path}: error: {e} (file left untouched; please report this)")
        return out

    new_data = files.encode(new_text, source.encoding) if out.changed else data
    if job.write_back is WriteBack.STDOUT:
        out.stdout = new_data
    elif out.changed and job.write_back is WriteBack.YES:
        try:
            files.write_atomic(job.path, new_data)
        except OSError as e:
            out.failed = True
            out.warnings.append(f"{job.path}: error: cannot write: {e.strerror or e}")
    return out


def _rewrite(job: Job, kind: Kind, text: str, out: Outcome) -> str:
    """The new text (``text`` if none is needed), with ``out`` filled in; raises
    :class:`ParseError` for the input, :class:`UnstableRewrite` for the output."""
    result = kind.rewrite(text, job.options)
    if result.diagnostics or (job.verbose and result.steps):
        where = kind.lines(result)
        for d in result.diagnostics:
            out.warnings.append(f"{_at(job.path, *where(d.line))}:{d.column}: {d.code} {d.message}")
        if job.verbose:
            out.details.extend(_step_line(job.path, s, where) for s in result.steps)
    if not result.changed:
        return text
    if job.write_back is not WriteBack.CHECK:  # --check knows the answer without the new text
        _check_stable(job, kind, result.text)
    out.changed = True
    if job.write_back is WriteBack.CHECK:
        return text
    if job.write_back is WriteBack.DIFF:
        out.diff = kind.diff(text, result.text, job.path)
    return result.text


def _check_stable(job: Job, kind: Kind, new_text: str) -> None:
    """Raise :class:`UnstableRewrite` unless ``new_text`` parses and, where it protects a write,
    a second pass leaves it as it is (black's stability check; it doubles the codemod's time)."""
    try:
        kind.parse(new_text)
        if job.write_back.writes and kind.rewrite(new_text, job.options).changed:
            raise UnstableRewrite("a second pass would change the rewritten code again")
    except ParseError as e:
        where = _place(e.line, getattr(e, "cell", None))
        raise UnstableRewrite(f"the rewritten code does not parse ({e.message}, {where})") from e


def _terminated(text: str) -> str:
    return text + "\n" if text and not text.endswith(("\n", "\r")) else text


def _name(side: str, path: str) -> str:
    """git's ``a/x.py``; an absolute path keeps one slash (``a/tmp/x.py``)."""
    return f"{side}{path}" if path.startswith("/") else f"{side}/{path}"


def _at(path: str, line: int, cell: int | None = None) -> str:
    """``path:line`` (``path:cell 3:line`` in a notebook), the start of a message."""
    return f"{path}:cell {cell}:{line}" if cell else f"{path}:{line}"


def _place(line: int, cell: int | None = None) -> str:
    """``line 5`` (``cell 3, line 5`` in a notebook), for a sentence."""
    return f"cell {cell}, line {line}" if cell else f"line {line}"


def _step_line(path: str, s: StepReport, where: Where) -> str:
    """One ``-v`` line: where a step is, and where its calls went."""
    placed = []
    if s.predict_line is not None:
        placed.append(f"predict at {_place(*where(s.predict_line))}")
    if s.restore_line is not None:
        placed.append(f"restore at {_place(*where(s.restore_line))}")
    calls = ", ".join(placed) if placed else "no calls placed"
    return (
        f"{path}: step of {s.optimizer!r}: backward at {_place(*where(s.backward_line))}, "
        f"step at {_place(*where(s.step_line))}; {calls}"
    )


def unified_diff(a: str, b: str, a_name: str, b_name: str) -> str:
    """A ``diff -u`` of two texts; a last line without newline is marked like diff does."""
    import difflib

    lines = []
    for line in difflib.unified_diff(
        a.splitlines(keepends=True), b.splitlines(keepends=True), a_name, b_name, n=3
    ):
        if not line.endswith(("\n", "\r")):
            line += "\n\\ No newline at end of file\n"
        lines.append(line)
    return "".join(lines)
