"""Defaults from ``[tool.xgrad-rewrite]`` in the nearest ``pyproject.toml`` (black's lookup).

The search starts at the common parent of the paths on the command line and walks up; it stops at
the first ``pyproject.toml`` (that file's table, or nothing, is the config) or at a repository
root (``.git``/``.hg``), so a checkout never picks up settings from outside itself.

As in black, the table becomes click's ``default_map`` (:func:`read_pyproject_toml` is the
eager ``--config`` callback), so a value given on the command line wins and an option declared
with ``cls=Setting`` is configurable with no list to update here: its key is its long name
(``--optimizer`` is ``optimizer``; dashes and underscores are interchangeable). Each value is
checked as its option's click type would check the command line's, with TOML's own types (a
number must be a TOML number, not a string), so a typo is a usage error naming the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click


class ConfigError(ValueError):
    """The config table is wrong; the CLI turns this into a usage error (exit 2)."""


class Setting(click.Option):
    """An option ``[tool.xgrad-rewrite]`` may set too, under :func:`key_of` the option."""


def key_of(option: click.Option) -> str:
    """The option's key in the table: its long name, with underscores (``no_cache``)."""
    return max(option.opts, key=len).lstrip("-").replace("-", "_")


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
    """The ``[tool.xgrad-rewrite]`` table of ``pyproject`` as written (empty if none)."""
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
    return table


def read_pyproject_toml(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """``--config`` callback: put the table of ``value`` (else of the pyproject.toml governing
    the paths, which are eager too) into ``ctx.default_map``. Returns the file when it set
    anything, else None (black's ``read_pyproject_toml``)."""
    if not value:
        paths = ctx.params.get("paths") or ()
        found = find_pyproject(tuple(paths)) if paths else None  # no paths: main says so
        if found is None:
            return None
        value = str(found)
    try:
        table = load(Path(value))
    except ConfigError as e:
        raise click.UsageError(str(e), ctx) from e
    if not table:
        return None
    settings = {key_of(p): p for p in ctx.command.get_params(ctx) if isinstance(p, Setting)}
    default_map = dict(ctx.default_map or {})
    for raw_key, raw in table.items():
        option = settings.get(raw_key.replace("-", "_"))
        if option is None:
            raise click.UsageError(
                f"{value}: unknown key {raw_key!r} in [tool.xgrad-rewrite] "
                f"(known: {', '.join(settings)})",
                ctx,
            )
        assert option.name is not None
        default_map[option.name] = _checked(
            ctx, option, raw, f"{value}: [tool.xgrad-rewrite] {raw_key}"
        )
    ctx.default_map = default_map
    return value


def _checked(ctx: click.Context, option: click.Option, value: Any, where: str) -> Any:
    """``value`` as the default_map should hold it, or a usage error: TOML's type must be the
    option type's (``s = "2"`` is a mistake), then the type's own check (ranges, choices)."""
    single, plural = _describe(option.type)
    expected = single
    items: list[Any] | None = [value]
    if option.multiple:  # a name or a list of names
        expected = f"{single} or a list of {plural}"
        value = [value] if isinstance(value, str) else value
        items = value if isinstance(value, list) else None
    wrong = click.UsageError(f"{where} must be {expected} (got {value!r})", ctx)
    if items is None or not all(_toml_fits(option.type, v) for v in items):
        raise wrong
    try:
        option.type_cast_value(ctx, value)
    except click.BadParameter as e:
        raise wrong from e
    return value


def _toml_fits(kind: click.ParamType, value: Any) -> bool:
    """Whether ``value``'s TOML type is the one the click type reads (bools are no numbers)."""
    if isinstance(kind, click.types.BoolParamType):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(kind, click.types.IntParamType):
        return isinstance(value, int)
    if isinstance(kind, click.types.FloatParamType):
        return isinstance(value, (int, float))
    return isinstance(value, str)


def _describe(kind: click.ParamType) -> tuple[str, str]:
    """What a value of this click type is, for an error: singular and plural."""
    if isinstance(kind, click.Choice):
        either = " or ".join(f'"{c}"' for c in kind.choices)
        return either, "them"
    if isinstance(kind, click.types.BoolParamType):
        return "true or false", "booleans"
    if isinstance(kind, click.types.IntParamType):
        return "an integer" + _range(kind), "integers"
    if isinstance(kind, click.types.FloatParamType):
        return "a number" + _range(kind), "numbers"
    name = getattr(kind, "description", None) or "a string"
    return name, "strings"


def _range(kind: click.ParamType) -> str:
    """`` >= 0``-style bounds of an IntRange/FloatRange (nothing for a plain number)."""
    bounds = []
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    if low is not None:
        bounds.append(f"{'>' if getattr(kind, 'min_open', False) else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if getattr(kind, 'max_open', False) else '<='} {high}")
    return " " + " and ".join(bounds) if bounds else ""
