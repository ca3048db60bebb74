"""The codemod's public data types: what goes in, what comes out.

The codemod is pure text to text (design.md): ``rewrite(source, options) -> Result``. It never
touches disk and never imports torch; the CLI does all IO around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Options:
    """What the user asked for.

    ``s``: number of prediction steps written into ``xgrad.predict(opt, s=...)``.
    ``optimizers``: if non-empty, only patch steps of optimizers with these names
    (as written in the source, e.g. ``optimizer_G`` or ``self.optimizer``).
    ``revert``: remove everything a previous run inserted instead of inserting.
    ``mode``: ``"eager"`` (predict/restore around each step) or ``"fx"`` (wrap the model once).
    """

    s: float = 1
    optimizers: tuple[str, ...] = ()
    revert: bool = False
    mode: Literal["eager", "fx"] = "eager"


@dataclass(frozen=True)
class Diagnostic:
    """A message about one place in the source (1-based line, 0-based column, like ast)."""

    line: int
    column: int
    code: str
    message: str
    severity: Severity = "warning"


@dataclass(frozen=True)
class StepReport:
    """One training step the codemod found, and where its calls went (for ``-v``)."""

    optimizer: str
    backward_line: int
    step_line: int
    predict_line: int | None
    restore_line: int | None


@dataclass(frozen=True)
class Result:
    """The rewritten text and everything the codemod has to say about it."""

    text: str
    changed: bool
    diagnostics: tuple[Diagnostic, ...] = ()
    steps: tuple[StepReport, ...] = field(default=())


class ParseError(ValueError):
    """The source is not valid Python; carries the position for a ``file:line:col`` message."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
