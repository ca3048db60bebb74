"""Defaults from ``[tool.xgrad-rewrite]`` in the nearest ``pyproject.toml`` (black's lookup).

The search starts at the common parent of the paths on the command line and walks up; it stops at
the first ``pyproject.toml`` (that file's table, or nothing, is the config) or at a repository
root (``.git``/``.hg``), so a checkout never picks up settings from outside itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Keys as a user writes them; dashes and underscores are interchangeable (TOML style varies).
KEYS = ("s", "optimizer", "exclude", "mode", "jobs")


class ConfigError(ValueError):
    """The config table is wrong; the CLI turns this into a usage error (exit 2)."""


def find_pyproject(paths: tuple[str, ...]) -> Path | None:
    """The ``pyproject.toml`` governing ``paths`` (``-`` counts as the working directory)."""
    dirs = []
    for p in paths or (".",):
        p = os.path.abspath("." if p == "-" else p)
        dirs.append(p if os.path.isdir(p) else os.path.dirname(p))
    start = Path(os.path.commonpath(dirs))
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists() or (directory / ".hg").exists():
            return None
    return None


def load(pyproject: Path) -> dict[str, Any]:
    """Validated ``[tool.xgrad-rewrite]`` values of ``pyproject``, keyed like :data:`KEYS`."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    try:
        with open(pyproject, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{pyproject}: {e}") from e
    table = data.get("tool", {}).get("xgrad-rewrite", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.xgrad-rewrite] must be a table")
    values: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in KEYS:
            raise ConfigError(
                f"{pyproject}: unknown key {raw_key!r} in [tool.xgrad-rewrite] "
                f"(known: {', '.join(KEYS)})"
            )
        values[key] = _check(pyproject, key, value)
    return values


def _check(pyproject: Path, key: str, value: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{pyproject}: [tool.xgrad-rewrite] {key} must be {expected}")

    if key == "s":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise bad("a number >= 0")
        return float(value)
    if key == "optimizer":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a name or a list of names")
        return tuple(value)
    if key == "exclude":
        if not isinstance(value, str):
            raise bad("a regular expression string")
        return value
    if key == "mode":
        if value not in ("eager", "fx"):
            raise bad('"eager" or "fx"')
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # jobs
        raise bad("an integer >= 1")
    return value
