"""Counting what happened to each file, the summary line and the exit code (black's ``Report``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

EXIT_OK = 0
EXIT_WOULD_CHANGE = 1
EXIT_USAGE = 2
EXIT_FAILED = 123


class WriteBack(Enum):
    """What to do with a file's new text (black's ``WriteBack``)."""

    YES = "yes"  # write it in place (only if it changed)
    STDOUT = "stdout"  # ``-``: write the text to stdout, changed or not
    DIFF = "diff"  # print a unified diff; write nothing
    CHECK = "check"  # write nothing; only say whether it would change

    @classmethod
    def from_flags(cls, *, check: bool, diff: bool) -> WriteBack:
        """``--diff`` with ``--check`` is ``--diff`` (which exits 1 on a change too)."""
        if diff:
            return cls.DIFF
        return cls.CHECK if check else cls.YES

    def for_path(self, path: str) -> WriteBack:
        """``-`` (stdin) writes to stdout what a file would have written in place."""
        return WriteBack.STDOUT if path == "-" and self is WriteBack.YES else self

    @property
    def writes(self) -> bool:
        """Whether the new text goes somewhere (else the words are "would ...")."""
        return self in (WriteBack.YES, WriteBack.STDOUT)


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


@dataclass
class Report:
    """Counts patched / unchanged / failed files.

    ``check``: nothing is written (``--check``/``--diff``), so the words become "would be" and a
    pending change exits 1. ``revert``: the verb is "reverted" instead of "patched".
    """

    check: bool = False
    revert: bool = False
    changed: int = 0
    unchanged: int = 0
    failed: int = 0

    @property
    def verb(self) -> str:
        return "reverted" if self.revert else "patched"

    def done(self, changed: bool) -> None:
        if changed:
            self.changed += 1
        else:
            self.unchanged += 1

    def failure(self) -> None:
        self.failed += 1

    @property
    def return_code(self) -> int:
        """123 if any file failed, else 1 if ``check`` and something would change, else 0."""
        if self.failed:
            return EXIT_FAILED
        if self.check and self.changed:
            return EXIT_WOULD_CHANGE
        return EXIT_OK

    def __str__(self) -> str:
        """E.g. ``2 files patched, 5 files left unchanged, 1 file failed``."""
        would = "would be " if self.check else ""
        parts = []
        if self.changed:
            parts.append(f"{_files(self.changed)} {would}{self.verb}")
        if self.unchanged:
            parts.append(f"{_files(self.unchanged)} {would}left unchanged")
        if self.failed:
            parts.append(f"{_files(self.failed)} {'would fail' if self.check else 'failed'}")
        return ", ".join(parts) if parts else "No files to process"
