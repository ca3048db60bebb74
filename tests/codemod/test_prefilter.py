"""The text pre-filter: a file the codemod cannot act on is answered without libcst.

It must give exactly what the libcst codemod gives (same text, no diagnostics, no steps), and a
file that does not parse must still fail with file:line:col.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from xgrad_rewrite.codemod import Options, ParseError, rewrite, transform
from xgrad_rewrite.codemod.prefilter import could_change

EXE = pathlib.Path(sys.executable).with_name("xgrad-rewrite")
ROOT = pathlib.Path(__file__).resolve().parents[2]

PLAIN = textwrap.dedent(
    '''\
    """A data-loading helper: no training step in sight."""

    import json
    import pathlib


    def load(path):
        with open(path) as f:
            return [json.loads(line) for line in f]


    class Table:
        def __init__(self, rows):
            self.rows = rows

        def step(self, n):
            return self.rows[::n]
    '''
)
TRAIN = textwrap.dedent(
    """\
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in [torch.randn(2, 4)]:
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
    """
)
# Sources the codemod acts on or reports on although no `backward` is written in them.
NO_BACKWARD = {
    "closure_lambda": "for x in data:\n    opt.step(lambda: model(x).sum())\n",
    "wrapper": textwrap.dedent(
        """\
        import torch
        optimizer = torch.optim.AdamW(model.parameters())
        for x, y in data:
            loss = criterion(model(x), y)
            loss_scaler(loss, optimizer, parameters=model.parameters())
        """
    ),
    "wrapper_scheduler_evidence": textwrap.dedent(
        """\
        sched = CosineLR(opt)
        for x, y in data:
            loss = criterion(model(x), y)
            loss_scaler(loss, opt)
        """
    ),
    "trainer": "from transformers import Trainer\nTrainer(model=m, args=a).train()\n",
}


def cases() -> list[tuple[str, str, Options]]:
    patched = transform.rewrite(TRAIN).text
    out = [(name, src, Options()) for name, src in NO_BACKWARD.items()]
    out += [
        ("plain", PLAIN, Options()),
        ("plain_revert", PLAIN, Options(revert=True)),
        ("plain_fx", PLAIN, Options(mode="fx")),  # fx reports "nothing to wrap"
        ("patched_revert", patched, Options(revert=True)),
        ("patched", patched, Options(s=2)),
        ("train", TRAIN, Options()),
    ]
    return out


@pytest.mark.parametrize(("name", "source", "options"), cases(), ids=lambda c: str(c)[:20])
def test_same_result_as_the_libcst_codemod(name, source, options) -> None:
    assert rewrite(source, options) == transform.rewrite(source, options)


def test_sources_the_codemod_acts_on_pass_the_filter() -> None:
    """Each of these gives a change or a diagnostic in the libcst codemod, so the filter must let
    it through (the test above would still pass if both said nothing)."""
    for source in NO_BACKWARD.values():
        full = transform.rewrite(source)
        assert full.changed or full.diagnostics, source
        assert could_change(source, Options())
    assert transform.rewrite(PLAIN, Options(mode="fx")).diagnostics
    assert not could_change(PLAIN, Options())
    assert not could_change(TRAIN, Options(revert=True))


def test_syntax_error_still_raises_with_position() -> None:
    with pytest.raises(ParseError) as info:
        rewrite("import json\nx = (\n")
    assert (info.value.line, info.value.column) == (2, 4)


def _cli_libcst_loaded(
    tmp_path: pathlib.Path, name: str, text: str, *options: str
) -> tuple[int, str, bool]:
    """Run the CLI in a fresh interpreter; its exit code, stderr, and whether libcst got loaded."""
    (tmp_path / name).write_text(text)
    code = textwrap.dedent(
        """\
        import sys
        from xgrad_rewrite.cli import main
        try:
            main(["--no-cache", *sys.argv[2:], sys.argv[1]])
        except SystemExit as e:
            print(e.code, "libcst" in sys.modules)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, name, *(options or ("--check",))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    exit_code, loaded = proc.stdout.split()[-2:]  # after any diff on stdout
    return int(exit_code), proc.stderr, loaded == "True"


def test_cli_never_imports_libcst_for_a_file_without_a_step(tmp_path) -> None:
    assert _cli_libcst_loaded(tmp_path, "plain.py", PLAIN)[::2] == (0, False)


def test_check_of_an_unpatched_training_script_answers_without_libcst(tmp_path) -> None:
    """The analysis runs on the stdlib ast; libcst is loaded only to make the new text."""
    assert _cli_libcst_loaded(tmp_path, "train.py", TRAIN)[::2] == (1, False)
    assert _cli_libcst_loaded(tmp_path, "train.py", TRAIN, "--check", "-v")[::2] == (1, False)
    # the controls: showing the diff or writing makes the text, with libcst
    assert _cli_libcst_loaded(tmp_path, "train.py", TRAIN, "--diff")[::2] == (1, True)
    assert _cli_libcst_loaded(tmp_path, "train.py", TRAIN, "-q")[::2] == (0, True)
    assert "xgrad.predict(" in (tmp_path / "train.py").read_text()


def test_cli_syntax_error_in_a_file_without_a_step(tmp_path) -> None:
    (tmp_path / "bad.py").write_text("import json\n\ndef broken(:\n    pass\n")
    proc = subprocess.run(
        [str(EXE), "--no-cache", "--check", "bad.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 123
    assert "bad.py:3:11: error:" in proc.stderr


def test_trainer_scripts_are_checked_without_libcst(tmp_path) -> None:
    """Only a Trainer imported from transformers/lightning gets a callback (libcst's pass); and
    that pass is needed for the new text, not for the answer of --check."""
    from xgrad_rewrite.codemod.analysis.trainers import TRAINERS
    from xgrad_rewrite.codemod.transform import _FRAMEWORKS

    assert all(
        _FRAMEWORKS.search(name.split(".")[0]) for name in TRAINERS
    )  # the text test is a superset
    own = (ROOT / "fixtures" / "trainer_class.in.py").read_text()
    assert "class Trainer" in own
    assert _cli_libcst_loaded(tmp_path, "own.py", own)[::2] == (1, False)
    hf = (ROOT / "fixtures" / "hf_trainer.in.py").read_text()
    # an HF Trainer script that only needs its callback is answered on the ast too
    assert _cli_libcst_loaded(tmp_path, "hf.py", hf)[::2] == (1, False)
    assert _cli_libcst_loaded(tmp_path, "hf.py", hf, "--diff")[::2] == (1, True)  # the control
