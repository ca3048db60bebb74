"""The calls the codemod writes: what text, at which slot.

Kept apart from :mod:`.patch` (which needs libcst) so that the analysis can say what it would
insert without loading libcst.
"""

from __future__ import annotations

from dataclasses import dataclass

from xgrad_rewrite.codemod.blocks import Slot


def format_s(s: float) -> str:
    """``2`` for 2.0, ``0.5`` for 0.5: the number as a user would write it."""
    value = float(s)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(eq=False)
class Insertion:
    """``code`` (one simple statement, no newline) at ``slot``; ``take_leading`` moves the
    target's leading blank lines/comments above the inserted line."""

    slot: Slot
    code: str
    take_leading: bool = True
