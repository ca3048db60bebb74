"""The codemod's `--mode fx` golden outputs run for real against `xgrad_rewrite.fx`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OUTPUTS = sorted(FIXTURES.glob("fx_mode_*.out.py"))


def run(script: Path, tmp_path: Path, **env: str) -> str:
    environ = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    environ.pop("XGRAD_S", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not OUTPUTS, reason="no --mode fx fixtures yet")
@pytest.mark.parametrize("script", OUTPUTS, ids=lambda p: p.name)
def test_patched_fx_fixture_trains_and_evaluates(script, tmp_path):
    assert "xgrad.fx.predictive(" in script.read_text(encoding="utf-8")
    predicted = run(script, tmp_path)
    assert "loss" in predicted
    if script.name == "fx_mode_mlp.out.py":  # the prediction changed training
        assert run(script, tmp_path, XGRAD_DISABLE="1") != predicted
