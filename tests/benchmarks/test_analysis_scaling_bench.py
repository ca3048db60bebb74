"""benchmarks/analysis_scaling.py runs end to end at a tiny size and writes every row; the
timings are the benchmark's, never asserted here."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


@pytest.mark.skipif(not (BIN / "black").exists(), reason="black (the dev extra) is not installed")
def test_tiny_run_writes_both_rows(tmp_path) -> None:
    out = tmp_path / "scaling.md"
    script = ROOT / "benchmarks" / "analysis_scaling.py"
    command = [sys.executable, str(script), "--reps", "1", "--sizes", "3", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    report = out.read_text()
    assert "| 3 | same in every loop |" in report and "| 3 | distinct |" in report


def test_the_generated_file_rebinds_the_same_names() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from analysis_scaling import make_file
    finally:
        sys.path.pop(0)
    text = make_file(4, same_names=True)
    assert text.count("\noptimizer = torch.optim.SGD") == 4
    compile(text, "generated", "exec")
