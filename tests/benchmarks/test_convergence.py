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

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


def test_report_verdicts_from_saved_runs(tmp_path):
    """--from-json: better/worse only beyond two standard errors; lower perplexity is better."""
    finals = {  # s -> final metric per seed
        "digits": {0: [96.0, 96.5, 97.0], 1: [98.0, 98.2, 98.4], 2: [96.2, 96.9, 96.4]},
        "lstm": {0: [7.0, 7.1, 7.2], 1: [6.5, 6.6, 6.55], 2: [7.6, 7.7, 7.65]},
    }
    metric = {"digits": "test_acc", "lstm": "valid_ppl"}
    runs = []
    for task, by_s in finals.items():
        for s, values in by_s.items():
            epochs = [
                {
                    "seed": seed,
                    "epoch": e,
                    metric[task]: value - 2 + e,
                    "epoch_s": 1 + s / 10,
                }
                for seed, value in enumerate(values)
                for e in (1, 2)
            ]
            runs.append({"task": task, "optimizer": "adam", "s": s, "status": "ok", "wall_s": 1.0,
                         "epochs": epochs})  # fmt: skip
    context = {
        "command": "python benchmarks/convergence.py", "machine": "test box, 2 cores",
        "torch": "2.x", "date": "today", "wall_min": 1.0, "parallel": 2,
        "seeds": {"digits": "0,1,2", "lstm": "0,1,2"}, "patch": "cli",
        "diffs": {"digits": "+xgrad.predict(optimizer, s=1)", "lstm": "+xgrad.restore(optimizer)"},
    }  # fmt: skip
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"context": context, "runs": runs}))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "convergence.py"), "--from-json", str(saved)]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "convergence.md").read_text()
    digits, lstm = report.split("## CNN on")[1].split("## char-level")[:2]
    rows = {}
    for name, section in (("digits", digits), ("lstm", lstm)):
        for line in section.splitlines():
            if line.startswith("| Adam |"):
                rows[f"{line.split('|')[2].strip()}/{name}"] = line
    assert "| better |" in rows["XGrad-S1/digits"] and "| +1.70 |" in rows["XGrad-S1/digits"]
    assert "| within noise |" in rows["XGrad-S2/digits"]
    assert "| better |" in rows["XGrad-S1/lstm"]  # perplexity went down
    assert "| worse |" in rows["XGrad-S2/lstm"]
    assert "| 1.10 |" in rows["XGrad-S1/lstm"]  # epoch time ratio to the base run
    assert "- Adam: better: S1; worse: S2." in report
    assert "- Adam: better: S1; within noise: S2." in report
    assert (out / "convergence_digits.png").exists() and (out / "convergence_lstm.png").exists()


def test_cli_patch_failure_is_reported_not_ignored(tmp_path):
    """A script the codemod cannot patch stops the benchmark instead of running unpatched."""
    import click

    convergence = load_convergence()
    plain = tmp_path / "no_loop.py"
    plain.write_text("print('no training step here')\n")
    with pytest.raises(click.ClickException, match=r"(?s)not patch no_loop.py.*--patch fallback"):
        convergence.patch_with_cli([plain])
