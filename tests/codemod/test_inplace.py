"""The ast-only "already in the target state" answer (codemod/analysis/inplace.py) against the full
libcst path (take the calls out, put them back, compare), on every golden output and on
perturbed copies of them: the fast answer may decline (None), but never say "unchanged" where the
full path would change a byte, and when it answers, its diagnostics and step lines are the same.
"""

from __future__ import annotations

import ast
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FIXTURES
from support.golden import NAMES, options_for, read

from xgrad_rewrite.codemod import Options, rewrite
from xgrad_rewrite.codemod.analysis.inplace import in_place
from xgrad_rewrite.codemod.transform import _rewrite_with_libcst

# Outputs the fast answer does not cover: Trainer callbacks always take the libcst path, and a
# file with nothing patched has no calls to check.
_PATCHED = [
    n
    for n in NAMES
    if "XGradCallback" not in (FIXTURES / f"{n}.out.py").read_text(errors="replace")
    and "import xgrad_rewrite.runtime as" in (FIXTURES / f"{n}.out.py").read_text(errors="replace")
]


def _full(source: str, options: Options):
    return _rewrite_with_libcst(source, ast.parse(source), False, options)


def _same_answer(fast, full) -> None:
    assert not full.changed
    assert fast.text == full.text
    assert fast.diagnostics == full.diagnostics
    assert fast.steps == full.steps


def test_the_fast_answer_covers_the_patched_fixtures() -> None:
    assert len(_PATCHED) >= 15


@pytest.mark.parametrize("name", _PATCHED)
def test_patched_fixture_is_answered_without_libcst_and_agrees(name: str) -> None:
    source, _ = read(FIXTURES / f"{name}.out.py")
    options = options_for(name)
    fast = in_place(source, options)
    assert fast is not None, name
    _same_answer(fast, _full(source, options))
    assert rewrite(source, options) == fast  # and it is what rewrite() returns


@pytest.mark.parametrize("name", _PATCHED)
def test_other_s_is_not_in_place(name: str) -> None:
    source, _ = read(FIXTURES / f"{name}.out.py")
    options = options_for(name)
    other = Options(s=options.s + 1, optimizers=options.optimizers, mode=options.mode)
    if re.search(r"\bs=", source):
        assert in_place(source, other) is None
        assert _full(source, other).changed


def _perturb(source: str, data: st.DataObject) -> str:
    """One small edit near the codemod's lines: what a user (or a merge) might do to them."""
    lines = source.splitlines(keepends=True)
    ours = [i for i, line in enumerate(lines) if "xgrad" in line] or [0]
    index = data.draw(st.sampled_from(ours)) + data.draw(st.integers(-2, 2))
    index = min(max(index, 0), len(lines) - 1)
    line = lines[index]
    newline = line[len(line.rstrip("\r\n")) :] or "\n"
    body = line.rstrip("\r\n")
    indent = body[: len(body) - len(body.lstrip())]
    edit = data.draw(
        st.sampled_from(
            ["blank", "comment", "delete", "swap", "space", "join", "trailing", "dedent", "dup"]
        )
    )
    if edit == "blank":
        lines.insert(index, newline)
    elif edit == "comment":
        lines.insert(index, f"{indent}# note{newline}")
    elif edit == "delete":
        del lines[index]
    elif edit == "swap" and index + 1 < len(lines):
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
    elif edit == "space":
        lines[index] = body.replace(",", " ,", 1).replace("(", "( ", 1) + newline
    elif edit == "join" and index + 1 < len(lines):
        lines[index] = body + "; " + lines[index + 1].lstrip()
        del lines[index + 1]
    elif edit == "trailing":
        lines[index] = body + "  " + newline
    elif edit == "dedent":
        lines[index] = body.lstrip() + newline
    elif edit == "dup":
        lines.insert(index, line)
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_perturbed_file_is_never_wrongly_called_unchanged(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(_PATCHED))
    source, _ = read(FIXTURES / f"{name}.out.py")
    options = options_for(name)
    perturbed = _perturb(source, data)
    try:
        ast.parse(perturbed)
    except SyntaxError:
        return
    fast = in_place(perturbed, options)
    if fast is not None:
        _same_answer(fast, _full(perturbed, options))
