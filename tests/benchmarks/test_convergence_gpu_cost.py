"""benchmarks/gpu_cost.py: models, the XGrad variant really predicting, the report (tiny sizes)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_cost():
    path = ROOT / "benchmarks" / "gpu_cost.py"
    spec = importlib.util.spec_from_file_location("gpu_cost", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_models_have_resnet_sizes(gpu_cost):
    """CIFAR ResNet-18 has 11.17M parameters, ResNet-50 23.52M (10 classes)."""
    count = {}
    for work in gpu_cost.workloads(tiny=False):
        count[work.name] = sum(p.numel() for p in work.build().parameters())
    assert count["ResNet-18"] == pytest.approx(11.17e6, rel=0.01)
    assert count["ResNet-50"] == pytest.approx(23.52e6, rel=0.01)
    assert count["LSTM-2 LM"] > 10e6


@pytest.mark.parametrize("optimizer", ["sgdm", "adam"])
def test_xgrad_variant_predicts_and_base_does_not(gpu_cost, optimizer):
    """Same seed and batch: the XGrad trainer's weights drift from the base trainer's."""
    work = gpu_cost.workloads(tiny=True)[0]
    cpu = torch.device("cpu")
    base = gpu_cost.Trainer(work, optimizer, 0, cpu)
    twin = gpu_cost.Trainer(work, optimizer, 0, cpu)
    pred = gpu_cost.Trainer(work, optimizer, 2.0, cpu)
    for trainer in (base, twin, pred):
        trainer.steps(3)
    weights = [
        torch.cat([p.detach().flatten() for p in t.model.parameters()]) for t in (base, twin, pred)
    ]
    assert torch.equal(weights[0], weights[1])
    assert not torch.allclose(weights[0], weights[2])


def run_tiny(gpu_cost, tmp_path, device):
    out = tmp_path / "gpu_cost.md"
    result = CliRunner().invoke(
        gpu_cost.main, ["--device", device, "--tiny", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_tiny_cpu_report(gpu_cost, tmp_path):
    report = run_tiny(gpu_cost, tmp_path, "cpu")
    for model in ("ResNet-18", "ResNet-50", "LSTM-2 LM"):
        for optimizer in ("SGDM", "Adam"):
            assert f"| {model} |" in report and f"| {optimizer} |" in report
    rows = [line for line in report.splitlines() if line.startswith("| ResNet") or "| LSTM" in line]
    assert len(rows) == 6
    assert "+5.67 %" in report and "+11.21 %" in report and "+1.8 %" in report
    assert "command: `python benchmarks/gpu_cost.py --device cpu --tiny" in report
    assert "torch " in report and "cores" in report
    assert "these figures mean nothing" in report
    assert rows[0].split("|")[7].strip() == "n/a"  # no GPU memory on the CPU


def test_cuda_is_refused_without_a_gpu(gpu_cost):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    result = CliRunner().invoke(gpu_cost.main, ["--device", "cuda", "--tiny"])
    assert result.exit_code == 2 and "CUDA is not available" in result.output


@pytest.mark.gpu
def test_tiny_cuda_report_measures_memory(gpu_cost, tmp_path):
    report = run_tiny(gpu_cost, tmp_path, "cuda")
    row = next(line for line in report.splitlines() if line.startswith("| ResNet-18"))
    cells = [c.strip() for c in row.split("|")]
    base_mib, xgrad_mib = (float(c.replace(",", "")) for c in cells[7:9])
    assert xgrad_mib >= base_mib > 0  # the stash is one more copy of the parameters
