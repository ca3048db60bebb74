"""benchmarks/runtime_overhead_fused.py: both parts run end to end in --tiny mode on the CPU.

The kernel is left uncompiled here (seconds, not minutes); the script's logic, the XGRAD_IMPL
switching per variant and the report are what is checked. GPU figures come from the device tool.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import torch

from xgrad_rewrite.runtime import fused

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(fused, "compile_fn", lambda fn: fn)
    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setattr(fused, "COUNTS", {"fused": 0, "foreach": 0})
    path = ROOT / "benchmarks" / "runtime_overhead_fused.py"
    spec = importlib.util.spec_from_file_location("runtime_overhead_fused", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("runtime_overhead_fused", None)


def test_tiny_run_writes_both_tables(bench, tmp_path):
    out = tmp_path / "r.md"
    threads = torch.get_num_threads()
    try:
        text = bench.main(
            ["--tiny", "--threads", "1", "--repeats", "1", "--rounds", "2", "--block", "1",
             "--out", str(out)]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert out.read_text(encoding="utf-8") == text
    assert "- command: `python benchmarks/runtime_overhead_fused.py --tiny" in text
    assert f"torch {torch.__version__}" in text
    for name in ("SGDM", "Adam", "AdamW", "AdaBelief", "AdaM3"):
        assert f"| {name} |" in text
    for variant in ("base", "XGrad-S2 foreach", "XGrad-S2 fused"):
        assert text.count(f"| {variant} |") == 5  # 2 ResNet-50 runs x 2 optimizers + GPT
    assert "GPT-2-small-shaped bf16 autocast" in text and "fused kernel" in text
    assert fused.COUNTS["fused"] > 0  # the fused variants really ran the fused path


def test_resnet50_has_resnet50_size(bench):
    resnet = bench.workloads(tiny=False)[0]["build"]()
    n = sum(p.numel() for p in resnet.parameters())
    assert 23.4e6 < n < 23.6e6  # ResNet-50 with a 10-class head (25.6M with 1000 classes)
    assert len(list(resnet.parameters())) == 161


def test_gpt_shape_is_gpt2_small(bench):
    work = bench.workloads(tiny=False)[-1]
    model = torch.device("meta")
    with model:
        gpt = work["build"]()
    n = sum(p.numel() for p in gpt.parameters())
    assert 120e6 < n < 130e6  # GPT-2 small: 124M with the tied head
