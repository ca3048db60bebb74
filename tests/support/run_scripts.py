"""Runs scripts one after another in this process and records what each prints.

Usage: python run_scripts.py OUT.json SCRIPT...

Two such processes, one over original fixtures and one over their patched copies under
``XGRAD_DISABLE=1``, see the same sequence of global random states, so even a script that seeds
nothing must print the same in both. One process each keeps torch's import to two in all.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback


def run(script: str) -> dict[str, str | None]:
    out = io.StringIO()
    error = None
    argv, sys.argv = sys.argv, [script]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            error = f"SystemExit({exit_.code})"
    except Exception:  # noqa: BLE001 - reported to the test
        error = traceback.format_exc(limit=-3)
    finally:
        sys.argv = argv
    return {"stdout": out.getvalue(), "error": error}


def main() -> None:
    out, *scripts = sys.argv[1:]
    results = {script: run(script) for script in scripts}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
