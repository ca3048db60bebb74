"""Shortcuts inside the libcst codemod that must not change its output.

revert: whether the runtime import is still used, and where imports must be dropped, is read
from the text when it leaves no doubt; otherwise the tree is walked as before. These cases pin
both branches.
"""

from __future__ import annotations

import pytest

from xgrad_rewrite.codemod import Options, rewrite

PATCHED = """\
import torch
import xgrad_rewrite.runtime as xgrad

model = torch.nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x in [torch.randn(2, 4)]:
    xgrad.predict(optimizer, s=1)
    loss = model(x).sum()
    loss.backward()
    xgrad.restore(optimizer)
    optimizer.step()
"""
ORIGINAL = (
    PATCHED.replace("import xgrad_rewrite.runtime as xgrad\n", "")
    .replace("    xgrad.predict(optimizer, s=1)\n", "")
    .replace("    xgrad.restore(optimizer)\n", "")
)
NESTED = "def f():\n    import xgrad_rewrite.runtime as xgrad\n"


@pytest.mark.parametrize(
    ("tail", "import_kept"),
    [
        ("", False),  # the text proves the alias unused
        ("# xgrad, in a comment\n", False),  # the text leaves a doubt; the walk finds no name
        ("print(xgrad.__name__)\n", True),  # still used: the import stays
        ("def g(xgrad=1):\n    pass\n", True),  # a name `xgrad` (a parameter) counts as a use
        ("x = 'xgrad_rewrite.runtime'\n", False),  # module name in a string: walk, then drop
        (NESTED, True),  # the nested import names `xgrad`: the top-level import stays
    ],
)
def test_revert_drops_the_import_only_when_unused(tail, import_kept) -> None:
    result = rewrite(PATCHED + tail, Options(revert=True))
    imports = "import torch\nimport xgrad_rewrite.runtime as xgrad\n"
    expected = ORIGINAL.replace("import torch\n", imports) if import_kept else ORIGINAL
    assert result.text == expected + tail
    assert "xgrad.predict" not in result.text and "xgrad.restore" not in result.text
