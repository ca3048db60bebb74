"""The codemod's public data types: what goes in, what comes out.

The codemod is pure text to text: ``rewrite(source, options) -> Result``. It never touches disk
and never imports torch; the CLI does all IO around it, so the CLI, the notebook front end and
the tests drive it the same way (ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Options:
    """What the user asked for.

    ``s``: number of prediction steps written into ``xgrad.predict(opt, s=...)``; None keeps
    the ``s`` the file's earlier calls already have (1 for a file without any), which is what
    the CLI passes when the user gives no ``--s``, so ``--check`` accepts a file patched with
    ``--s 2``.
    ``optimizers``: if non-empty, only patch steps of optimizers with these names
    (as written in the source, e.g. ``optimizer_G`` or ``self.optimizer``).
    ``revert``: remove everything a previous run inserted instead of inserting.
    ``mode``: ``"eager"`` (predict/restore around each step) or ``"fx"`` (wrap the model once).
    """

    s: float | None = 1
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


class Result:
    """The rewritten text and everything the codemod has to say about it.

    ``text`` may be given as a function that makes it: ``changed``, ``diagnostics`` and ``steps``
    come from the analysis alone, and ``--check`` never needs the text, so it never pays for
    loading libcst to write it.
    """

    __slots__ = ("_text", "changed", "diagnostics", "steps")

    def __init__(
        self,
        text: str | Callable[[], str],
        changed: bool,
        diagnostics: tuple[Diagnostic, ...] = (),
        steps: tuple[StepReport, ...] = (),
    ) -> None:
        self._text = text
        self.changed = changed
        self.diagnostics = diagnostics
        self.steps = steps

    @property
    def text(self) -> str:
        if not isinstance(self._text, str):
            self._text = self._text()
        return self._text

    def _key(self) -> tuple[object, ...]:
        return (self.text, self.changed, self.diagnostics, self.steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Result) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Result(text={self.text!r}, changed={self.changed!r}, "
            f"diagnostics={self.diagnostics!r}, steps={self.steps!r})"
        )


class ParseError(ValueError):
    """The source is not valid Python; carries the position for a ``file:line:col`` message."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
