"""codemod/analysis/trainers.py + transform._callbacks_only: the ast answer for an unpatched Trainer
script against libcst's callback pass (trainer_callback.py), over import forms x call shapes x
with/without a training loop. The ast may decline (None); when it answers, the libcst path must
agree: changed, nothing to report, and the same new text."""

from __future__ import annotations

import ast
import itertools

import pytest
from support import FIXTURES

from xgrad_rewrite.codemod import Options
from xgrad_rewrite.codemod.transform import _callbacks_only, _rewrite_with_libcst

IMPORTS = [
    ("from transformers import Trainer", "Trainer"),
    ("from transformers import Trainer as HFTrainer", "HFTrainer"),
    ("import transformers", "transformers.Trainer"),
    ("from transformers import Seq2SeqTrainer", "Seq2SeqTrainer"),
    ("import lightning as L", "L.Trainer"),
    ("from lightning.pytorch import Trainer", "Trainer"),
    ("import pytorch_lightning as pl", "pl.Trainer"),
    ("from mylib import Trainer", "Trainer"),  # not a framework's: no callback
]
# (arguments, patched without a note)
SHAPES = [
    ("", True),
    ("model, args", True),
    ("model=m, callbacks=[]", True),
    ("model=m, callbacks=[Early()]", True),
    ("\n    model=m,\n    callbacks=[\n        Early(),\n    ],\n", True),
    ("**config", False),
    ("*parts", False),
    ("model=m, callbacks=make_callbacks()", False),
    ("m, a, None, None, None, None, None, None, None, [Early()]", False),
]
LOOP = """
for x, y in loader:
    loss = model(x).sum()
    loss.backward()
    opt.step()
"""


def _source(imports: str, call: str, arguments: str, loop: bool, twice: bool) -> str:
    body = f"trainer = {call}({arguments})\n"
    if twice:
        body += f"other = {call}()\n"
    return f"{imports}\n\n{body}" + (LOOP if loop else "")


CASES = [
    _source(imports, call, arguments, loop, twice)
    for (imports, call), (arguments, _), loop, twice in itertools.product(
        IMPORTS, SHAPES, (False, True), (False, True)
    )
] + [
    "import lightning as L\nfrom transformers import Trainer\n\na = Trainer()\nb = L.Trainer()\n",
    (FIXTURES / "hf_trainer.in.py").read_text(),
    (FIXTURES / "lightning_trainer.in.py").read_text(),
]


@pytest.mark.parametrize("source", CASES)
def test_the_ast_answer_agrees_with_the_callback_pass(source: str) -> None:
    tree = ast.parse(source)
    fast = _callbacks_only(source, tree, Options(s=2))
    full = _rewrite_with_libcst(source, ast.parse(source), True, Options(s=2))
    if fast is None:
        return
    assert full.changed and fast.changed
    assert full.diagnostics == fast.diagnostics == ()
    assert full.steps == fast.steps == ()
    assert fast.text == full.text


def test_the_ast_answers_the_plain_cases() -> None:
    answered = [s for s in CASES if _callbacks_only(s, ast.parse(s), Options()) is not None]
    positional = SHAPES[-1][0]  # callbacks by position: only transformers.Trainer takes them so
    expected = sum(
        2  # one call, two calls
        for (imports, _), (arguments, clean) in itertools.product(IMPORTS[:-1], SHAPES)
        if clean or (arguments == positional and "transformers" not in imports)
    )
    assert len(answered) == expected + 2  # + the hf_trainer and lightning_trainer fixtures
    assert all("mylib" not in s and "for x, y" not in s for s in answered)
