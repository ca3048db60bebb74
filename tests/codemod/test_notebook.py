"""Notebooks: golden fixtures with the real codemod, and the cell/JSON mechanics with a stand-in.

Golden pairs live in ``fixtures/notebooks/NAME.in.ipynb`` / ``NAME.out.ipynb``.
"""

from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fake_codemod import fake_rewrite

import xgrad_rewrite.codemod
from xgrad_rewrite.cli import main
from xgrad_rewrite.codemod import inserted
from xgrad_rewrite.codemod.api import Options, ParseError, Result
from xgrad_rewrite.codemod.notebook import (
    IMPORT_CELL_ID,
    CellParseError,
    cell_lines,
    changed_cells,
    rewrite_notebook,
)

IMPORT_LINE = inserted.import_line(inserted.ALIAS)
FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "notebooks"
NAMES = sorted(p.name[: -len(".in.ipynb")] for p in FIXTURES.glob("*.in.ipynb"))


def nb(*sources: str, minor: int = 5, indent: int | None = 1, trailing: str = "\n") -> str:
    """A notebook text with one markdown cell, then one code cell per source."""
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Title é"]}]
    for n, src in enumerate(sources):
        cells.append(
            {
                "cell_type": "code",
                "execution_count": n + 1,
                "metadata": {"tags": ["x"]},
                "outputs": [{"name": "stdout", "output_type": "stream", "text": ["out\n"]}],
                "source": src.splitlines(keepends=True),
            }
        )
    if minor >= 5:
        for n, cell in enumerate(cells):
            cell["id"] = f"id{n}"
    doc = {
        "cells": cells,
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": minor,
    }
    return json.dumps(doc, indent=indent, sort_keys=True, ensure_ascii=False) + trailing


def code_sources(text: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "code"]


SETUP = (
    "import torch\n"
    "model = torch.nn.Linear(2, 1)\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)"
)
LOOP = (
    "for x, y in data:\n"
    "    optimizer.zero_grad()\n"
    "    loss = ((model(x) - y) ** 2).mean()\n"
    "    loss.backward()\n"
    "    optimizer.step()"
)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", fake_rewrite)


# --- golden fixtures, real codemod --------------------------------------------------------


def test_there_are_golden_notebooks():
    assert len(NAMES) >= 3
    for name in NAMES:
        assert (FIXTURES / f"{name}.out.ipynb").exists(), name


@pytest.mark.parametrize("name", NAMES)
def test_golden_notebook(name):
    source = (FIXTURES / f"{name}.in.ipynb").read_text(encoding="utf-8")
    expected = (FIXTURES / f"{name}.out.ipynb").read_text(encoding="utf-8")
    result = rewrite_notebook(source, Options())
    assert result.text == expected
    assert result.changed
    # outputs, metadata, ids untouched: only code cells' sources differ
    before, after = json.loads(source), json.loads(expected)
    added = [c for c in after["cells"] if c.get("id") == IMPORT_CELL_ID]
    kept = [c for c in after["cells"] if c.get("id") != IMPORT_CELL_ID]
    assert len(kept) == len(before["cells"]) and len(added) <= 1
    for old, new in zip(before["cells"], kept, strict=True):
        assert {k: v for k, v in old.items() if k != "source"} == {
            k: v for k, v in new.items() if k != "source"
        }
    assert IMPORT_LINE in "".join(code_sources(expected))
    # idempotent, and --revert gives back the original bytes
    assert not rewrite_notebook(expected, Options()).changed
    assert rewrite_notebook(expected, Options(revert=True)).text == source


def test_new_import_cell_with_the_real_codemod():
    text = nb("%run setup.py", "from helpers import model, optimizer, data", LOOP)
    result = rewrite_notebook(text, Options())
    cells = json.loads(result.text)["cells"]
    assert cells[1]["id"] == IMPORT_CELL_ID and cells[1]["source"] == [IMPORT_LINE]
    assert "xgrad.restore(optimizer)" in "".join(cells[4]["source"])
    assert not rewrite_notebook(result.text, Options()).changed
    assert rewrite_notebook(result.text, Options(revert=True)).text == text


def test_golden_notebooks_through_the_cli(tmp_path):
    for name in NAMES:
        (tmp_path / f"{name}.ipynb").write_bytes((FIXTURES / f"{name}.in.ipynb").read_bytes())
    result = CliRunner().invoke(main, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        out = (FIXTURES / f"{name}.out.ipynb").read_bytes()
        assert (tmp_path / f"{name}.ipynb").read_bytes() == out
    assert CliRunner().invoke(main, ["--revert", str(tmp_path)]).exit_code == 0
    for name in NAMES:
        assert (tmp_path / f"{name}.ipynb").read_bytes() == (
            FIXTURES / f"{name}.in.ipynb"
        ).read_bytes()


def test_a_users_own_runtime_import_is_left_alone(tmp_path):
    """``import xgrad_rewrite.runtime as xg`` is the user's (the codemod never picks ``xg``): a
    patch keeps that line and its use where they are, and --revert gives back the bytes, as
    for the same code in a .py file."""
    own = "import xgrad_rewrite.runtime as xg"
    setup = SETUP.replace("import torch\n", f"import torch\n{own}\n")
    text = nb(setup, "data = []\nprint(xg)", LOOP)
    result = rewrite_notebook(text, Options())
    assert result.changed
    before, after = code_sources(text), code_sources(result.text)
    assert own in after[0].splitlines() and after[1] == before[1]  # the line and print(xg)
    assert [ln for ln in after[0].splitlines() if ln != IMPORT_LINE] == before[0].splitlines()
    assert "xgrad.restore(optimizer)" in after[2]
    assert rewrite_notebook(result.text, Options(revert=True)).text == text
    script = "\n".join([setup, "data = []\nprint(xg)", LOOP]) + "\n"
    patched = xgrad_rewrite.codemod.rewrite(script, Options()).text
    assert own in patched.splitlines() and "print(xg)" in patched  # what a .py file gets
    # through the CLI: the same, byte for byte back
    path = tmp_path / "own.ipynb"
    path.write_text(text, encoding="utf-8")
    assert CliRunner().invoke(main, [str(path)]).exit_code == 0
    assert own in "".join(code_sources(path.read_text(encoding="utf-8")))
    assert CliRunner().invoke(main, ["--revert", str(path)]).exit_code == 0
    assert path.read_text(encoding="utf-8") == text


# --- mechanics (stand-in codemod) ---------------------------------------------------------


def test_nothing_to_patch_is_byte_identical(fake):
    text = nb("import torch\nx = torch.ones(3)", "%timeit x + 1")
    result = rewrite_notebook(text, Options())
    assert not result.changed and result.text is text


def test_import_goes_after_the_first_torch_import_and_calls_into_the_loop(fake):
    text = nb("%matplotlib inline\nimport numpy as np", SETUP, "data = []", LOOP)
    result = rewrite_notebook(text, Options(s=2))
    sources = code_sources(result.text)
    assert sources[0] == "%matplotlib inline\nimport numpy as np"
    assert sources[1].splitlines()[:2] == ["import torch", IMPORT_LINE]
    assert "    xgrad.predict(optimizer, s=2)\n    loss =" in sources[3]
    assert "    xgrad.restore(optimizer)\n    optimizer.step()" in sources[3]
    assert not sources[3].endswith("\n")  # Jupyter's last line keeps no newline
    assert [c.cell for c in changed_cells(text, result.text)] == [3, 5]
    assert rewrite_notebook(result.text, Options(revert=True)).text == text


def test_outputs_metadata_ids_and_layout_are_kept(fake):
    for kwargs in ({}, {"indent": 2, "trailing": ""}, {"minor": 2}):
        text = nb(SETUP, "data = []", LOOP, **kwargs)
        result = rewrite_notebook(text, Options())
        old, new = json.loads(text), json.loads(result.text)
        for a, b in zip(old["cells"], new["cells"], strict=True):
            assert {k: v for k, v in a.items() if k != "source"} == {
                k: v for k, v in b.items() if k != "source"
            }
        # only source lines differ: re-serialising the new content the old way gives the new text
        old["cells"] = new["cells"]
        indent = kwargs.get("indent", 1)
        dumped = json.dumps(old, indent=indent, sort_keys=True, ensure_ascii=False)
        assert result.text == dumped + kwargs.get("trailing", "\n")
        assert "Title é" in result.text  # ensure_ascii kept off


def test_unsorted_keys_and_ascii_escapes_are_kept(fake):
    doc = {
        "nbformat": 4,
        "nbformat_minor": 0,
        "metadata": {"language_info": {"name": "python"}},
        "cells": [
            {"cell_type": "markdown", "source": ["caf\u00e9"], "metadata": {}},
            {"cell_type": "code", "source": SETUP, "metadata": {}, "execution_count": None,
             "outputs": []},
            {"cell_type": "code", "source": LOOP, "metadata": {}, "execution_count": None,
             "outputs": []},
        ],
    }  # fmt: skip
    text = json.dumps(doc, indent=2, ensure_ascii=True)
    result = rewrite_notebook(text, Options())
    assert result.changed and "caf\\u00e9" in result.text
    assert list(json.loads(result.text)) == ["nbformat", "nbformat_minor", "metadata", "cells"]
    assert isinstance(json.loads(result.text)["cells"][2]["source"], str)  # a string stays one
    assert rewrite_notebook(result.text, Options(revert=True)).text == text


def test_verbose_lines_follow_the_moved_import(fake):
    text = nb("%matplotlib inline", SETUP, LOOP)  # the codemod puts the import into cell 2
    result = rewrite_notebook(text, Options())
    new = json.loads(result.text)["cells"]
    for step in result.steps:
        for line in (step.predict_line, step.restore_line):
            cell, n = cell_lines(result.text)(line)
            assert "xgrad." in "".join(new[cell - 1]["source"]).splitlines()[n - 1]


def test_an_import_already_in_place_stays_there(fake):
    setup = f"import torch\n\nx = 1\n\n{IMPORT_LINE}\nmodel = torch.nn.Linear(2, 1)\n" + (
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)"
    )
    text = nb(setup, "data = []", LOOP)
    result = rewrite_notebook(text, Options())
    assert code_sources(result.text)[0] == setup
    assert not rewrite_notebook(result.text, Options()).changed


def test_a_step_split_across_cells(fake):
    text = nb(
        SETUP,
        "optimizer.zero_grad()\nloss = model(x).sum()",
        "loss.backward()",
        "optimizer.step()\nmodel.weight",
    )
    sources = code_sources(rewrite_notebook(text, Options()).text)
    assert (
        sources[1] == "optimizer.zero_grad()\nxgrad.predict(optimizer, s=1)\nloss = model(x).sum()"
    )
    assert sources[2] == "loss.backward()"
    # the restore belongs to the cell of the step it guards, not to the end of the cell before
    assert sources[3] == "xgrad.restore(optimizer)\noptimizer.step()\nmodel.weight"


def test_new_import_cell_when_no_cell_imports_torch(fake):
    setup = "from helpers import torch_setup\noptimizer = torch.optim.SGD(params, lr=0.1)"
    for minor in (5, 4):
        text = nb(setup, LOOP, minor=minor)
        result = rewrite_notebook(text, Options())
        cells = json.loads(result.text)["cells"]
        assert cells[0]["cell_type"] == "markdown"  # a title stays on top
        assert cells[1]["source"] == [IMPORT_LINE] and cells[1]["outputs"] == []
        assert cells[1].get("id") == (IMPORT_CELL_ID if minor >= 5 else None)
        assert [c.cell for c in changed_cells(text, result.text)] == [2, 4]
        assert not rewrite_notebook(result.text, Options()).changed
        assert rewrite_notebook(result.text, Options(revert=True)).text == text


def test_magics_are_masked_and_kept(fake):
    loop_with_magics = LOOP.replace(
        "    loss.backward()", "    !echo step\n    loss.backward()\n    %time x = 1"
    )
    cells = [
        "%load_ext autoreload\n%autoreload 2\n!pip install -q tqdm\nfiles = !ls\nmodel?",
        SETUP,
        "data = []",
        "%%time\n" + loop_with_magics,
        "%%bash\nfor f in *.py; do\n  echo $f\ndone",
    ]
    text = nb(*cells)
    sources = code_sources(rewrite_notebook(text, Options()).text)
    assert sources[0] == cells[0] and sources[4] == cells[4]
    assert sources[3].startswith("%%time\nfor x, y in data:\n")
    assert "    !echo step\n    loss.backward()\n    %time x = 1\n" in sources[3]
    assert "xgrad.restore(optimizer)" in sources[3]


def test_modulo_at_line_start_is_python_not_a_magic(fake):
    cell = "x = (10\n     % 3)"
    text = nb(SETUP, cell, "data = []", LOOP)
    assert code_sources(rewrite_notebook(text, Options()).text)[1] == cell


def test_a_cell_that_does_not_parse_names_the_cell(fake):
    text = nb(SETUP, "data = []", "for x in data:\n    y = (x +\n")
    with pytest.raises(CellParseError) as info:
        rewrite_notebook(text, Options())
    assert info.value.cell == 4  # markdown is cell 1
    assert info.value.line in (2, 3)


def test_a_codemod_parse_error_is_mapped_to_its_cell(monkeypatch):
    def refuse(source, options):
        raise ParseError("libcst says no", 6, 2)  # program line 6: cell 3's second line

    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", refuse)
    with pytest.raises(CellParseError) as info:
        rewrite_notebook(nb("import torch\nx = 1", "y = 2\nz = 3"), Options())
    assert (info.value.cell, info.value.line, info.value.column) == (3, 2, 2)


def test_not_json_or_not_a_notebook_is_a_parse_error():
    with pytest.raises(ParseError, match="JSON"):
        rewrite_notebook("{\n  nope", Options())
    with pytest.raises(ParseError, match="no 'cells'"):
        rewrite_notebook('{"a": 1}', Options())


def test_other_kernels_are_left_alone(fake):
    text = nb(SETUP, "data = []", LOOP).replace('"language": "python"', '"language": "R"')
    assert not rewrite_notebook(text, Options()).changed


def test_cli_diff_per_cell_revert_and_errors(fake, tmp_path):
    path = tmp_path / "train.ipynb"
    text = nb(SETUP, "data = []", LOOP)
    path.write_text(text, encoding="utf-8")
    diff = CliRunner().invoke(main, ["--diff", str(path)])
    assert diff.exit_code == 1
    assert f"--- a{path}:cell 2\n+++ b{path}:cell 2\n" in diff.stdout
    assert f"--- a{path}:cell 4\n+++ b{path}:cell 4\n" in diff.stdout
    assert "+    xgrad.restore(optimizer)" in diff.stdout
    assert "No newline at end of file" not in diff.stdout  # cells end without one by convention
    assert path.read_text(encoding="utf-8") == text
    verbose = CliRunner().invoke(main, ["-v", str(path)])
    assert verbose.exit_code == 0
    assert "step of 'optimizer': backward at cell 4, line " in verbose.stderr
    assert "restore at cell 4, line " in verbose.stderr
    assert CliRunner().invoke(main, ["--check", str(path)]).exit_code == 0
    assert CliRunner().invoke(main, ["--revert", str(path)]).exit_code == 0
    assert path.read_text(encoding="utf-8") == text
    path.write_text(nb(SETUP, "def f(:\n    pass"), encoding="utf-8")
    bad = CliRunner().invoke(main, [str(path)])
    assert bad.exit_code == 123
    assert f"{path}:cell 3:1:6: error:" in bad.stderr


SCRIPT = """\
import torch
import torch.nn as nn
torch.manual_seed(0)
model = nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(16, 3)
y = x.sum(dim=1, keepdim=True)
optimizer.zero_grad()
pred = model(x)
loss = ((pred - y) ** 2).mean()
loss.backward()
optimizer.step()
for epoch in range(3):
    optimizer.zero_grad()
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    optimizer.step()
print(loss.item())
"""


@settings(max_examples=8, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=13)))
def test_any_split_into_cells_patches_like_the_script(cuts):
    """Cutting a script into cells at top-level statements changes nothing but the cells:
    joined back, the patched cells are the patched script (up to where the import sits), and
    no cell ends with an inserted call (each belongs to the statement after it)."""
    lines = SCRIPT.splitlines(keepends=True)
    bounds = [0, *sorted(c for c in cuts if not lines[c].startswith(" ")), len(lines)]
    cells = [
        "".join(lines[a:b]).removesuffix("\n")
        for a, b in zip(bounds, bounds[1:], strict=False)
        if b > a
    ]
    result = rewrite_notebook(nb(*cells), Options(s=2))
    new_cells = code_sources(result.text)
    assert len(new_cells) == len(cells)
    for cell in new_cells:
        assert not cell.rstrip().splitlines()[-1].lstrip().startswith("xgrad.")
    expected = xgrad_rewrite.codemod.rewrite(SCRIPT, Options(s=2)).text

    def without_import(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln != IMPORT_LINE]

    assert without_import("\n".join(new_cells)) == without_import(expected)
    assert IMPORT_LINE in new_cells[0]


LBFGS_CELL = (
    "lbfgs = torch.optim.LBFGS(model.parameters())\n\n\n"
    "def closure():\n"
    "    lbfgs.zero_grad()\n"
    "    loss = ((model(x) - y) ** 2).mean()\n"
    "    loss.backward()\n"
    "    return loss\n\n\n"
    "for _ in range(3):\n"
    "    lbfgs.step(closure)"
)


def test_notes_and_steps_name_their_cell_before_and_after_patching(tmp_path):
    """The codemod reports lines of its output; a notebook's Result reports lines of its own
    program, so a note points at the same cell and line whether the run patches or not."""
    path = tmp_path / "note.ipynb"
    text = nb(SETUP, "data = []", LOOP, LBFGS_CELL)
    path.write_text(text, encoding="utf-8")
    note = f"{path}:cell 5:12:4: XG102 lbfgs is built from torch.optim.LBFGS"
    for args in (["--check", "-v"], ["-v"], ["--check", "-v"]):
        result = CliRunner().invoke(main, [*args, "--no-cache", str(path)])
        assert result.exit_code in (0, 1), result.output
        assert note in result.stderr, (args, result.stderr)
        sources = code_sources(path.read_text(encoding="utf-8"))
        lines = sources[2].splitlines()
        step = "step of 'optimizer': backward at cell 4, line 5, step at cell 4, line 7; "
        assert step + "predict at cell 4, line 3, restore at cell 4, line 6" in result.stderr
    assert lines[2].strip().startswith("xgrad.predict") and lines[6].strip() == "optimizer.step()"
    result = rewrite_notebook(path.read_text(encoding="utf-8"), Options())
    (d,) = result.diagnostics
    cell, line = cell_lines(result.text)(d.line)
    assert (cell, line) == (5, 12)
    assert code_sources(result.text)[3].splitlines()[line - 1].strip() == "lbfgs.step(closure)"


def test_revert_diff_shows_the_import_cell_going(fake, tmp_path):
    setup = "from helpers import torch_setup\noptimizer = torch.optim.SGD(params, lr=0.1)"
    text = nb(setup, LOOP)
    patched = rewrite_notebook(text, Options()).text
    changes = changed_cells(patched, text)
    assert [(c.cell, c.old, c.new) for c in changes][0] == (2, IMPORT_LINE, "")
    assert [c.cell for c in changes] == [2, 3]  # the loop: cell 4 before, cell 3 after
    path = tmp_path / "nb.ipynb"
    path.write_text(patched, encoding="utf-8")
    diff = CliRunner().invoke(main, ["--diff", "--revert", str(path)])
    assert diff.exit_code == 1
    assert f"--- a{path}:cell 2\n+++ b{path}:cell 2\n@@ -1 +0,0 @@\n-{IMPORT_LINE}\n" in diff.stdout
    assert "-    xgrad.restore(optimizer)" in diff.stdout


def test_unstable_or_invalid_notebook_rewrite_leaves_it_untouched(monkeypatch, tmp_path):
    """Notebooks take the scripts' path: the rewritten cells must parse, and a second pass
    must leave them alone, before anything is written."""
    path = tmp_path / "nb.ipynb"
    text = nb(SETUP, "data = []", LOOP)
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(
        xgrad_rewrite.codemod, "rewrite", lambda src, o: Result(src + "def (:\n", True)
    )
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 123 and "does not parse" in result.stderr
    assert "cell 4, line" in result.stderr
    assert path.read_text(encoding="utf-8") == text
    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", lambda src, o: Result(src + "#\n", True))
    result = CliRunner().invoke(main, [str(path)])
    assert result.exit_code == 123 and "second pass" in result.stderr
    assert path.read_text(encoding="utf-8") == text
