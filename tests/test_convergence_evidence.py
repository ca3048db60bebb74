"""benchmarks/evidence.py: tuned best-against-best, time to target, resumable results file."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "evidence.py"

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("scipy")
pytest.importorskip("tqdm")


def load_evidence():
    spec = importlib.util.spec_from_file_location("evidence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_quick_end_to_end_then_resume_without_redoing_runs(tmp_path):
    out = tmp_path / "results"
    proc = run("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = out / "evidence_runs_quick_cpu.jsonl"
    lines = results.read_text().splitlines()
    runs = [json.loads(line) for line in lines]
    configs = [r["config"] for r in runs if "config" in r]
    # 3 tasks x AdamW x {base, S1, S2} x 2 lrs x 1 sweep seed, then winners, then the costs.
    sweep = [c for c in configs if c["kind"] == "train" and c["seed"] == 0]
    assert len(sweep) == 3 * 3 * 2
    assert {c["task"] for c in configs} == {"digits", "lstm", "gpt"}
    assert {c["s"] for c in configs if c["kind"] == "train"} == {0, 1, 2}
    assert sum(c["kind"] == "cost" for c in configs) == 3
    assert any(c["seed"] == 1 for c in configs if c["kind"] == "train")  # the winners' reruns
    report = (out / "evidence_quick_cpu.md").read_text()
    for heading in ("## Best against best", "## Time to target", "## Where the gain disappears",
                    "## Learning-rate sweep", "## Did training flatten?", "## Sizes"):  # fmt: skip
        assert heading in report, heading
    assert "| char-level decoder-only transformer LM | AdamW |" in report
    assert "95 % CI" in report and "command: `python benchmarks/evidence.py --quick" in report
    for png in ("evidence_quick_cpu.png", "evidence_curves_quick_cpu.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "evidence_quick_cpu.json").read_text())
    assert len(data["rows"]) == 3 and data["rows"][0]["variants"]["1"]["own"]["n"] == 2

    # Interrupted mid-write: a cut-off last line is ignored and that run alone is redone.
    with results.open("a") as f:
        f.write('{"config": {"kind": "tra')
    again = run("--quick", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(0 new runs" in again.stdout
    assert len(results.read_text().splitlines()) == len(lines) + 1  # nothing appended


def test_a_missing_run_is_the_only_one_redone(tmp_path, capsys):
    ev = load_evidence()
    argv = ["--quick", "--out", str(tmp_path), "--tasks", "digits", "--jobs", "0"]
    ev.main(argv)
    results = tmp_path / "evidence_runs_quick_cpu.jsonl"
    lines = results.read_text().splitlines()
    dropped = json.loads(lines[3])["config"]
    results.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    capsys.readouterr()
    ev.main(argv)
    assert "(1 new runs" in capsys.readouterr().out
    assert json.loads(results.read_text().splitlines()[-2])["config"] == dropped  # then a session


def test_welch_interval_and_steps_to_target():
    ev = load_evidence()
    diff, low, high = ev.welch([1.0, 1.1, 0.9, 1.0, 1.05], [0.8, 0.85, 0.75, 0.8, 0.82])
    assert diff == pytest.approx(-0.206, abs=1e-3)
    assert low < diff < high < 0  # a clear improvement: the interval excludes 0
    assert ev.judge([diff, low, high]) == "**XGrad better**"
    assert ev.judge([0.01, -0.02, 0.04]) == "no difference"
    assert ev.judge([0.05, 0.01, 0.09]) == "**XGrad worse**"
    curve = [(10, 3.0), (20, 2.0), (30, 1.5), (40, 1.4)]
    assert ev.steps_to(curve, 2.0) == 20
    assert ev.steps_to(curve, 1.75) == pytest.approx(25.0)
    assert ev.steps_to(curve, 1.0) is None
    assert ev.flatness(curve) == pytest.approx((1.5 - 1.4) / 1.5)


def test_best_lr_is_chosen_by_validation_and_skips_diverged_runs(tmp_path):
    ev = load_evidence()
    args = ev.parse_args(["--quick", "--out", str(tmp_path), "--tasks", "digits"])
    store = ev.Store(tmp_path / "runs.jsonl")
    plan = ev.Plan(args, store)
    valid = {0.5: 0.40, 2.0: 0.30}
    for s in ev.VARIANTS:
        for mult, loss in valid.items():
            cfg = plan.cfg("digits", "adamw", s, mult, 0)
            diverged = s == 2 and mult == 2.0
            result = dict(diverged=diverged, curve=[[1, loss]], train_s=1.0, wall_s=1.0)
            if not diverged:
                result |= dict(valid=dict(loss=loss, acc=90.0), test=dict(loss=loss, acc=90.0))
            store.add(dict(config=cfg, result=result))
    assert plan.best_mult("digits", "adamw", 0) == 2.0
    assert plan.best_mult("digits", "adamw", 2) == 0.5  # 2.0 diverged: +inf, never the best
    assert math.isinf(plan.sweep_mean("digits", "adamw", 2, 2.0))
    reloaded = ev.Store(tmp_path / "runs.jsonl")  # the same answers from the file
    assert ev.Plan(args, reloaded).best_mult("digits", "adamw", 2) == 0.5


def test_xgrad_is_applied_like_the_patched_scripts(monkeypatch):
    """predict before the forward, restore before clipping and the step, only when s > 0."""
    ev = load_evidence()
    import xgrad_rewrite.runtime as xgrad

    calls = []
    monkeypatch.setattr(xgrad, "predict", lambda opt, s: calls.append(("predict", s)))
    monkeypatch.setattr(xgrad, "restore", lambda opt: calls.append(("restore",)))
    cfg = ev.train_cfg("quick", "cpu", "lstm", "adamw", 2, 1.0, 0)
    result = ev.execute(cfg)
    steps = cfg["params"]["steps"]
    assert calls == [("predict", 2), ("restore",)] * steps
    assert len(result["curve"]) == cfg["params"]["evals"] and not result["diverged"]
    calls.clear()
    ev.execute(ev.train_cfg("quick", "cpu", "lstm", "adamw", 0, 1.0, 0))
    assert calls == []
