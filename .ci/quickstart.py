"""Print one of the README's two quick-start commands, so CI runs exactly what the README says.

python3 .ci/quickstart.py demo|test
"""

import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- quickstart -->\s*```(?:sh|bash|console)?\n(.*?)```", re.S)


def quickstart_commands(text: str) -> dict[str, str]:
    """The commands of the README's quick-start block, by name (`demo` first, `test` second)."""
    match = BLOCK.search(text)
    if match is None:
        raise SystemExit("README.md has no <!-- quickstart --> code block")
    lines = [ln for ln in match.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 2:
        raise SystemExit(f"the quick start must be exactly two commands, found {len(lines)}")
    return {"demo": lines[0], "test": lines[1]}


if __name__ == "__main__":
    print(quickstart_commands(README.read_text(encoding="utf-8"))[sys.argv[1]])
