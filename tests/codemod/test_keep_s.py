"""Without --s the codemod keeps the s an earlier run wrote (``Options(s=None)``)."""

from __future__ import annotations

from xgrad_rewrite.codemod import Options, rewrite

SCRIPT = """\
import torch
model = torch.nn.Linear(2, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x in [torch.randn(3, 2)]:
    loss = model(x).sum()
    loss.backward()
    optimizer.step()
"""


def test_no_s_keeps_the_files_s():
    patched = rewrite(SCRIPT, Options(s=2)).text
    assert "s=2" in patched
    again = rewrite(patched, Options(s=None))
    assert not again.changed and again.text == patched


def test_no_s_on_a_fresh_file_is_one():
    assert "xgrad.predict(optimizer, s=1)" in rewrite(SCRIPT, Options(s=None)).text


def test_an_explicit_s_still_updates():
    patched = rewrite(SCRIPT, Options(s=2)).text
    assert "s=3" in rewrite(patched, Options(s=3)).text
