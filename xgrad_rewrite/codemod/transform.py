"""Placeholder until the codemod lands (issue 5): returns the source unchanged."""

from __future__ import annotations

from xgrad_rewrite.codemod.api import Options, Result


def rewrite(source: str, options: Options | None = None) -> Result:
    """Return ``source`` rewritten for XGrad (not implemented yet: unchanged)."""
    return Result(text=source, changed=False)
