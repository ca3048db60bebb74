"""benchmarks/convergence.py: patch the plain scripts, run base vs XGrad, write tables and plots."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import py_compile
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "benchmarks" / "convergence_scripts"

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def load_convergence():
    spec = importlib.util.spec_from_file_location(
        "convergence", ROOT / "benchmarks" / "convergence.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cli_can_patch(tmp_path: pathlib.Path) -> bool:
    target = tmp_path / "probe.py"
    shutil.copy(SCRIPTS / "digits_cnn.py", target)
    exe = shutil.which("xgrad-rewrite", path=os.path.dirname(sys.executable))
    proc = subprocess.run([exe, str(target), "--s", "1"], capture_output=True, text=True)
    return proc.returncode == 0 and "xgrad.predict(" in target.read_text()


def test_scripts_are_plain_training_scripts():
    """The variants come from the tool: the committed scripts carry no XGrad calls."""
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        assert "xgrad_rewrite.runtime" not in text and "predict(" not in text, script.name


def test_fallback_patch_places_the_two_calls(tmp_path):
    convergence = load_convergence()
    for name in ("digits_cnn.py", "char_lstm.py"):
        target = tmp_path / name
        shutil.copy(SCRIPTS / name, target)
        convergence.patch_by_text(target)
        py_compile.compile(str(target), doraise=True)
        lines = [line.strip() for line in target.read_text().splitlines()]
        predict = lines.index("xgrad.predict(optimizer, s=1)")
        restore = lines.index("xgrad.restore(optimizer)")
        assert "import xgrad_rewrite.runtime as xgrad" in lines
        assert lines[predict - 1] == "optimizer.zero_grad()"
        assert lines[restore - 1] == "loss.backward()"
        assert lines.index("optimizer.step()") > restore
        assert name != "char_lstm.py" or lines[restore + 1].startswith("torch.nn.utils.clip_grad")


def test_quick_run_end_to_end_with_the_real_cli(tmp_path):
    if not cli_can_patch(tmp_path):
        pytest.skip("xgrad-rewrite cannot patch the convergence scripts yet")
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "convergence.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (out / "convergence.md").read_text()
    assert "patched by: the `xgrad-rewrite` CLI" in report
    assert "+import xgrad_rewrite.runtime as xgrad" in report  # the diff the variants ran with
    assert "| SGDM | base |" in report and "| Adam | XGrad-S1 |" in report
    assert "torch " in report and "cores" in report and "command: `python benchmarks/" in report
    for task in ("digits", "lstm"):
        assert (out / f"convergence_{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((out / "convergence.json").read_text())["runs"]
    assert len(runs) == 2 * 2 * 2 and all(run["status"] == "ok" for run in runs)
    final = {(r["task"], r["optimizer"], r["s"]): r["epochs"][-1] for r in runs}
    # Same seed and data on one thread: only XGRAD_S reaching the runtime can change the result.
    assert final["lstm", "adam", 0]["valid_ppl"] != final["lstm", "adam", 1]["valid_ppl"]
    assert final["digits", "sgdm", 0]["train_loss"] != final["digits", "sgdm", 1]["train_loss"]
