"""The repository explains itself: no tracked text file points at a document outside it or at an
issue number instead of giving the reason.

A maintainer reading a clone (or a wheel's sources) has neither the planning notes the project
started from nor its issue tracker; a comment that says "see the design notes" or gives a tracker
number leaves them without the why. The reasons belong in place, or in ARCHITECTURE.md /
docs/method.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Text files a person reads. JSON-lines files (benchmarks/results/*.jsonl) are raw run data, not
# prose, and are not scanned.
SUFFIXES = (".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".json", ".ipynb")

# Spelled in pieces so this file does not match itself.
OUTSIDE_DOCUMENTS = ("../" + "shared", "design" + ".md", "xgrad-method" + ".md", "fastpath" + ".md")
ISSUE_NUMBER = re.compile(r"\b[Ii]ssues? #?\d+")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git): nothing to list")
    names = [n for n in out.decode("utf-8", "replace").split("\0") if n]
    return [ROOT / n for n in names if n.endswith(SUFFIXES) and (ROOT / n).is_file()]


def _hits(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        named = [d for d in OUTSIDE_DOCUMENTS if d in line]
        issue = ISSUE_NUMBER.search(line)
        if named or issue:
            what = ", ".join([*named, *([issue.group(0)] if issue else [])])
            found.append(f"{path.relative_to(root)}:{number}: {what}: {line.strip()[:120]}")
    return found


def test_no_tracked_file_names_an_outside_document_or_an_issue_number():
    files = _tracked_text_files()
    assert files, "git ls-files listed no text files"
    hits = [hit for path in files for hit in _hits(path)]
    assert not hits, "say the reason in place (or point at ARCHITECTURE.md / docs/method.md):\n" + (
        "\n".join(hits)
    )


def test_the_check_catches_what_it_is_for(tmp_path):
    """The patterns themselves: each kind of reference is caught, ordinary prose is not."""
    caught = [
        "see ../" + "shared/notes",
        "as design" + ".md says",
        "(xgrad-method" + ".md, Table I)",
        "fastpath" + ".md",
        "(issue" + " 6)",
        "Issue" + " 11: optimizers",
        "issues" + " #12 and 13",
    ]
    fine = ["an issue with tracing", "the 6 issues below", "tissue 5", "design: md"]
    sample = tmp_path / "sample.md"
    sample.write_text("\n".join([*caught, *fine]) + "\n", encoding="utf-8")
    hits = _hits(sample, root=tmp_path)
    assert [int(h.split(":")[1]) for h in hits] == list(range(1, len(caught) + 1))
