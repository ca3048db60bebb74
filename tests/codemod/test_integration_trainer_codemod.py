"""The codemod step that adds XGradCallback to transformers / Lightning ``Trainer(...)`` calls."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import libcst as cst
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xgrad_rewrite.codemod.edit.trainer_callback import add_trainer_callbacks

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ["hf_trainer", "lightning_trainer"]
HF_IMPORT = "from xgrad_rewrite.integrations.transformers import XGradCallback\n"


def patch(source: str, s: float = 1, revert: bool = False) -> tuple[str, list]:
    module, diagnostics = add_trainer_callbacks(cst.parse_module(source), s, revert)
    return module.code, diagnostics


def roundtrip(source: str, s: float = 1) -> tuple[str, list]:
    """Patch, then check idempotence and the byte-exact revert; return the patched text."""
    out, diagnostics = patch(source, s)
    assert patch(out, s)[0] == out, "a second run must change nothing"
    assert patch(out, revert=True)[0] == source, "revert must give the original bytes"
    compile(out, "<patched>", "exec")
    return out, diagnostics


@pytest.mark.parametrize("name", FIXTURES)
def test_golden(name):
    source = (ROOT / "fixtures" / f"{name}.in.py").read_text()
    expected = (ROOT / "fixtures" / f"{name}.out.py").read_text()
    out, diagnostics = roundtrip(source)
    assert out == expected
    assert diagnostics == []


@pytest.mark.parametrize("name", FIXTURES)
def test_new_s_updates_the_call_in_place(name):
    patched = (ROOT / "fixtures" / f"{name}.out.py").read_text()
    out, _ = patch(patched, s=2.5)
    assert out == patched.replace("XGradCallback(s=1)", "XGradCallback(s=2.5)")
    assert patch(out, revert=True)[0] == (ROOT / "fixtures" / f"{name}.in.py").read_text()


@pytest.mark.parametrize(
    ("imports", "call", "module"),
    [
        ("from transformers import Trainer", "Trainer", "transformers"),
        ("from transformers import Trainer as HFTrainer", "HFTrainer", "transformers"),
        ("import transformers", "transformers.Trainer", "transformers"),
        ("from transformers import Seq2SeqTrainer", "Seq2SeqTrainer", "transformers"),
        ("import lightning as L", "L.Trainer", "lightning"),
        ("import lightning.pytorch as pl", "pl.Trainer", "lightning"),
        ("from lightning.pytorch import Trainer", "Trainer", "lightning"),
        ("import pytorch_lightning as pl", "pl.Trainer", "pytorch_lightning"),
        ("from pytorch_lightning import Trainer", "Trainer", "pytorch_lightning"),
    ],
)
def test_trainers_found_by_what_they_were_imported_as(imports, call, module):
    source = f"{imports}\n\ntrainer = {call}(max_steps=10)\n"
    out, _ = roundtrip(source, s=3)
    assert out == (
        f"from xgrad_rewrite.integrations.{module} import XGradCallback\n{imports}\n\n"
        f"trainer = {call}(max_steps=10, callbacks=[XGradCallback(s=3)])\n"
    )


@pytest.mark.parametrize(
    "source",
    [
        "class Trainer:\n    pass\n\n\ntrainer = Trainer(max_steps=3)\n",
        "from mylib import Trainer\n\ntrainer = Trainer(max_steps=3)\n",
        "import transformers\n\nargs = transformers.TrainingArguments(output_dir='x')\n",
    ],
)
def test_other_trainers_are_left_alone(source):
    assert patch(source) == (source, [])


def test_call_shapes():
    source = textwrap.dedent(
        """\
        from transformers import Trainer

        a = Trainer()
        b = Trainer(model, args)
        c = Trainer(model=m, callbacks=[])
        d = Trainer(model=m, callbacks=[*extra, Early()])
        e = Trainer(
            model=m,
            args=args  # no trailing comma
        )
        f = Trainer(
            model=m,
            callbacks=[
                Early(),  # stop early
                # Printer(),
            ],
            # report_to="wandb",
        )
        """
    )
    out, diagnostics = patch(source)
    assert diagnostics == []
    assert out == HF_IMPORT + textwrap.dedent(
        """\
        from transformers import Trainer

        a = Trainer(callbacks=[XGradCallback(s=1)])
        b = Trainer(model, args, callbacks=[XGradCallback(s=1)])
        c = Trainer(model=m, callbacks=[XGradCallback(s=1)])
        d = Trainer(model=m, callbacks=[*extra, Early(), XGradCallback(s=1)])
        e = Trainer(
            model=m,
            args=args,  # no trailing comma
            callbacks=[XGradCallback(s=1)]
        )
        f = Trainer(
            model=m,
            callbacks=[
                Early(),  # stop early
                XGradCallback(s=1),
                # Printer(),
            ],
            # report_to="wandb",
        )
        """
    )
    assert patch(out)[0] == out
    reverted = patch(out, revert=True)[0]
    # The one documented loss: a hand-written empty `callbacks=[]` goes with our element.
    assert reverted == source.replace("c = Trainer(model=m, callbacks=[])", "c = Trainer(model=m)")


def test_calls_it_cannot_patch_are_reported_and_left_as_they_are():
    source = textwrap.dedent(
        """\
        from transformers import Trainer

        a = Trainer(**config)
        b = Trainer(model=m, callbacks=make_callbacks())
        c = Trainer(m, a, None, None, None, None, None, None, None, [Early()])
        """
    )
    out, diagnostics = patch(source)
    assert out == source, "nothing patched: not even the import"
    assert [(d.code, d.line, d.column) for d in diagnostics] == [
        ("XG201", 3, 4),
        ("XG202", 4, 4),
        ("XG202", 5, 4),
    ]
    assert all("XGradCallback(s=1)" in d.message for d in diagnostics)


def test_diagnostic_lines_follow_the_inserted_import():
    source = "from transformers import Trainer\n\nok = Trainer()\nbad = Trainer(**kw)\n"
    out, diagnostics = patch(source)
    assert out.splitlines()[4] == "bad = Trainer(**kw)"
    assert [(d.code, d.line) for d in diagnostics] == [("XG201", 5)]


def test_name_taken():
    source = "from transformers import Trainer\nfrom mine import XGradCallback\n\nt = Trainer()\n"
    out, diagnostics = patch(source)
    assert out == source
    assert [d.code for d in diagnostics] == ["XG203"]


def test_two_frameworks_in_one_file():
    source = (
        "import lightning as L\nfrom transformers import Trainer\n\n"
        "a = Trainer()\nb = L.Trainer()\n"
    )
    out, diagnostics = roundtrip(source)
    assert "a = Trainer(callbacks=[XGradCallback(s=1)])" in out
    assert "b = L.Trainer()" in out
    assert [(d.code, d.line) for d in diagnostics] == [("XG204", 6)]


def test_import_kept_while_still_used_and_existing_import_reused():
    source = HF_IMPORT + "from transformers import Trainer\n\nt = Trainer()\ncb = XGradCallback\n"
    out, _ = patch(source)
    assert out.count(HF_IMPORT) == 1
    reverted, _ = patch(out, revert=True)
    assert reverted == source


def test_crlf_and_comments_survive():
    source = (
        '"""Doc."""\r\n\r\nfrom transformers import Trainer  # hf\r\n\r\n'
        "t = Trainer(\r\n    model=m,\r\n)\r\n"
    )
    out, _ = roundtrip(source)
    assert "\n" not in out.replace("\r\n", "")
    assert "    callbacks=[XGradCallback(s=1)],\r\n)" in out


def test_does_not_import_torch():
    code = (
        "import sys, libcst; from xgrad_rewrite.codemod.edit.trainer_callback import "
        "add_trainer_callbacks as f\n"
        "f(libcst.parse_module('from transformers import Trainer\\nTrainer()\\n'), 1, False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'lightning')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def render(items: list[str], multiline: bool, trailing: bool, comments: bool, indent: str) -> str:
    """``(a, b)``-style item lists in the layouts people write, brackets left out."""
    if not items:
        return ""
    if not multiline:
        return ", ".join(items) + ("," if trailing else "")
    inner = indent + "    "
    lines = []
    for i, item in enumerate(items):
        comma = "," if i < len(items) - 1 or trailing else ""
        lines.append(f"{inner}{item}{comma}" + (f"  # note {i}" if comments else ""))
    if comments:
        lines.append(f"{inner}# commented_out=1,")
    return "\n" + "\n".join(lines) + "\n" + indent


@given(
    n_args=st.integers(0, 3),
    n_callbacks=st.none() | st.integers(1, 3),  # `callbacks=[]`: test_call_shapes
    layouts=st.tuples(*[st.booleans()] * 6),
    s=st.sampled_from([1, 2, 0.5]),
)
@settings(max_examples=60, deadline=None)
def test_any_layout_roundtrips(n_args, n_callbacks, layouts, s):
    multi, trailing, comments, list_multi, list_trailing, list_comments = layouts
    items = [f"arg{i}=value{i}" for i in range(n_args)]
    if n_callbacks is not None:
        elements = [f"Callback{i}()" for i in range(n_callbacks)]
        inner = render(elements, list_multi, list_trailing, list_comments, "        ")
        items.insert(n_args // 2, f"callbacks=[{inner}]")
    call = "Trainer(" + render(items, multi, trailing, comments and multi, "    ") + ")"
    source = f"from transformers import Trainer\n\n\ndef main():\n    t = {call}\n"
    out, diagnostics = roundtrip(source, s)
    assert diagnostics == []
    assert out.count("XGradCallback(s=") == 1


def test_integrations_package_imports_no_framework():
    code = (
        "import sys, xgrad_rewrite.integrations\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'lightning', 'pytorch_lightning')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
