"""Codemod inserting XGrad predict/restore calls into training loops (text -> text).

Importing this package does not import libcst: :func:`rewrite` first asks :mod:`.prefilter`
whether the text could change at all; the analysis then runs on the stdlib :mod:`ast`, and
libcst is loaded only to edit (see :mod:`.transform`).
"""

from __future__ import annotations

from xgrad_rewrite.codemod.api import Diagnostic, Options, ParseError, Result, StepReport
from xgrad_rewrite.codemod.prefilter import could_change, parses


def rewrite(source: str, options: Options | None = None) -> Result:
    """``source`` with XGrad calls inserted (or removed, with ``options.revert``); see
    :func:`xgrad_rewrite.codemod.transform.rewrite`. Raises :class:`ParseError`."""
    options = options or Options()
    if not could_change(source, options) and parses(source):
        return Result(text=source, changed=False)
    from xgrad_rewrite.codemod.transform import rewrite as rewrite_cst

    return rewrite_cst(source, options)


__all__ = ["Diagnostic", "Options", "ParseError", "Result", "StepReport", "rewrite"]
