"""Decide from the text alone that :func:`~.transform.rewrite` would leave a file as it is.

A pre-commit hook sees every staged Python file of a repository, and most are not training
scripts. The codemod only ever acts on (or says something about) text that contains one of the
tokens below, so a file without any of them is returned unchanged without being analysed
(Python's parser still checks that it parses). The tokens are a superset of what the codemod
reads, not a guess at what a training script looks like; a file that has one simply takes the
full path.

What each token stands for (eager mode; ``--mode fx`` always takes the full path, since it
reports on any file where it finds no optimizer to wrap):

- ``backward``: ``loss.backward()``, ``accelerator.backward``, ``manual_backward`` (every
  patched step and every "no step" diagnostic starts from one);
- ``xgrad``/``XGrad``: an earlier run's import and calls (revert), ``XGradCallback``;
- ``Trainer``: frameworks that own their loop get a callback;
- ``optim``, ``param_groups``, ``unscale_``, ``schedul``, ``LR``: what makes an expression an
  optimizer (a ``torch.optim`` class, an optimizer-only use, an LR scheduler built from it),
  which a backward-and-step wrapper such as ``loss_scaler(loss, optimizer)`` needs;
- ``lambda`` with ``step``: ``opt.step(lambda: ...)``, reported as a closure loop.

Under ``--revert`` only an earlier run's own text matters (``xgrad``, ``XGradCallback``).
"""

from __future__ import annotations

import ast
import re

from xgrad_rewrite.codemod.api import Options
from xgrad_rewrite.codemod.inserted import CALLBACK, MARKER

_ANY = re.compile(rf"backward|{MARKER}|{CALLBACK}|Trainer|optim|param_groups|unscale_|schedul|LR")
_REVERT = re.compile(rf"{MARKER}|{CALLBACK}")


def could_change(source: str, options: Options) -> bool:
    """False only when the codemod certainly returns ``source`` unchanged with no diagnostics."""
    if options.revert:
        return _REVERT.search(source) is not None
    if options.mode != "eager":
        return True
    if _ANY.search(source) is not None:
        return True
    return "lambda" in source and "step" in source


def parses(source: str) -> bool:
    """Whether CPython's own parser accepts ``source`` (a fraction of libcst's parse time).

    A file it rejects takes the full path, which reports the error exactly as before (and
    still accepts syntax newer than this interpreter that libcst understands)."""
    try:
        compile(source, "<source>", "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError):  # ValueError: null bytes (Python < 3.12)
        return False
    return True
