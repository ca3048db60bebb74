"""benchmarks/cli_latency.py runs end to end (one repetition) and reports every row, the
verdicts and the breakdown; timings themselves are never asserted (they are the benchmark's)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


@pytest.mark.skipif(not (BIN / "black").exists(), reason="black (the dev extra) is not installed")
@pytest.mark.skipif(shutil.which("xgrad-rewrite", path=str(BIN)) is None, reason="not installed")
def test_one_repetition_writes_the_report(tmp_path) -> None:
    out = tmp_path / "cli_latency.md"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cli_latency.py"), "--reps", "1", "--out", out],
        check=True,
        capture_output=True,
        timeout=300,
    )
    report = out.read_text()
    assert report.count("| xgrad-rewrite | cold |") == 6
    assert report.count("| black | warm |") == 6
    assert report.count("black's median: target") == 12
    # --check never makes new text, so only the --diff rows load libcst: the breakdown says so
    assert "import libcst (only `--diff` and writing get here)" in report
    assert "--reps 1" in report
