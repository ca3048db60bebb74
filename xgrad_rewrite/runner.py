"""Patch one file: read bytes, rewrite, check the result, write bytes; report as plain text.

Runs in the CLI's process or in a worker process (``-j``), so everything it returns is a
picklable :class:`Outcome` with the messages already formatted; the CLI only prints them, in
the order of the files, whatever order the workers finish in.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from xgrad_rewrite import files
from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, StepReport
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
    """The codemod's output is not valid Python, or a second pass would change it again."""


def process(job: Job) -> Outcome:
    """Never raises for a bad file: a file that cannot be read or parsed is a failed Outcome."""
    out = Outcome(job.path)
    try:
        data = sys.stdin.buffer.read() if job.path == "-" else files.read_bytes(job.path)
    except OSError as e:
        out.failed = True
        out.warnings.append(f"{job.path}: error: cannot read: {e.strerror or e}")
        return out
    notebook = job.path != "-" and files.is_notebook(job.path)
    try:
        source = files.decode(data, notebook=notebook)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        out.failed = True
        out.warnings.append(f"{job.path}:1:0: error: cannot decode: {e}")
        return out
    try:
        if notebook:
            new_text = _notebook(job, source.text, out)
        else:
            new_text = _python(job, source.text, out)
    except ParseError as e:
        out.failed = True
        where = f"cell {e.cell}:" if getattr(e, "cell", None) else ""
        out.warnings.append(f"{job.path}:{where}{e.line}:{e.column}: error: {e.message}")
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


def _python(job: Job, text: str, out: Outcome) -> str:
    from xgrad_rewrite.codemod import rewrite

    result = rewrite(text, job.options)
    for d in result.diagnostics:
        out.warnings.append(_diagnostic(job.path, d.line, d.column, d))
    if job.verbose:
        out.details.extend(_step_line(job.path, s, _line, _line) for s in result.steps)
    if not result.changed:
        return text
    if job.write_back is WriteBack.CHECK:
        out.changed = True
        return text  # --check: the answer is known without making the new text (or libcst)
    import ast

    try:
        ast.parse(result.text)
    except SyntaxError as e:
        msg = f"the rewritten code does not parse ({e.msg}, line {e.lineno})"
        raise UnstableRewrite(msg) from e
    # black's stability check, only where it protects a write: it doubles the codemod's time.
    if job.write_back.writes and rewrite(result.text, job.options).changed:
        raise UnstableRewrite("a second pass would change the rewritten code again")
    out.changed = True
    if job.write_back is WriteBack.DIFF:
        out.diff = unified_diff(text, result.text, _name("a", job.path), _name("b", job.path))
    return result.text


def _notebook(job: Job, text: str, out: Outcome) -> str:
    from xgrad_rewrite.codemod.notebook import rewrite_notebook

    result = rewrite_notebook(text, job.options)
    for d in result.diagnostics:
        cell, line = result.where_old(d.line)
        out.warnings.append(_diagnostic(f"{job.path}:cell {cell}", line, d.column, d))
    if job.verbose:
        out.details.extend(
            _step_line(job.path, s, result.where_new_text, result.where_new_text)
            for s in result.steps
        )
    if not result.changed:
        return text
    if job.write_back.writes and rewrite_notebook(result.text, job.options).changed:
        raise UnstableRewrite("a second pass would change the rewritten notebook again")
    out.changed = True
    if job.write_back is WriteBack.DIFF:
        out.diff = "".join(
            unified_diff(
                _terminated(change.old),  # a cell's last line has no newline by convention
                _terminated(change.new),
                _name("a", f"{job.path}:cell {change.cell}"),
                _name("b", f"{job.path}:cell {change.cell}"),
            )
            for change in result.cells
        )
    return result.text


def _terminated(text: str) -> str:
    return text + "\n" if text and not text.endswith(("\n", "\r")) else text


def _name(side: str, path: str) -> str:
    """git's ``a/x.py``; an absolute path keeps one slash (``a/tmp/x.py``)."""
    return f"{side}{path}" if path.startswith("/") else f"{side}/{path}"


def _diagnostic(where: str, line: int, column: int, d: Diagnostic) -> str:
    return f"{where}:{line}:{column}: {d.code} {d.message}"


def _line(n: int) -> str:
    return f"line {n}"


def _step_line(path: str, s: StepReport, old, new) -> str:  # noqa: ANN001 - two line formatters
    """``old``/``new`` format the backward/step and the predict/restore lines (notebooks: cell
    and line); the codemod reports all four as lines of its output."""
    placed = []
    if s.predict_line is not None:
        placed.append(f"predict at {new(s.predict_line)}")
    if s.restore_line is not None:
        placed.append(f"restore at {new(s.restore_line)}")
    calls = ", ".join(placed) if placed else "no calls placed"
    return (
        f"{path}: step of {s.optimizer!r}: backward at {old(s.backward_line)}, "
        f"step at {old(s.step_line)}; {calls}"
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
