"""benchmarks/evidence.py: tuned best-against-best, time to target, resumable results file."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


def test_quick_end_to_end_interrupted_then_resumed(tmp_path):
    out = tmp_path / "results"
    results = out / "evidence_runs_quick_cpu.jsonl"
    first = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # interrupted mid-sweep
    first.wait(timeout=60)
    sessions = [json.loads(x) for x in results.read_text().splitlines() if '"session"' in x]
    assert sessions and sessions[-1].get("interrupted") is True
    done_before = len(results.read_text().splitlines()) - 1

    proc = run("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "wall time: " in (out / "evidence_quick_cpu.md").read_text()
    assert "(1 interrupted, then resumed)" in (out / "evidence_quick_cpu.md").read_text()
    lines = results.read_text().splitlines()
    runs = [json.loads(line) for line in lines]
    configs = [r["config"] for r in runs if "config" in r]
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)  # none redone
    assert len(configs) > done_before
    # 3 tasks x AdamW x {base, S1, S2} x 2 lrs x 1 sweep seed (plus x4 or x0.25 where a best
    # lay at an end of the grid), then the winners, then the costs.
    sweep = {(c["task"], c["s"], c["lr_mult"]) for c in configs if c["kind"] == "train"}
    for task in ("digits", "lstm", "gpt", "gpt_flat"):
        for s in (0, 1, 2):
            assert {(task, s, 0.5), (task, s, 2.0)} <= sweep
    data = json.loads((out / "evidence_quick_cpu.json").read_text())
    for row in data["rows"]:
        grid = sorted(float(m) for m in row["sweep_valid_loss"]["0"])
        bests = {row["variants"][s]["best_mult"] for s in ("0", "1", "2")}
        assert grid[1:-1] or not bests & {0.5, 2.0}  # a best at an end grew the grid once
    assert {c["task"] for c in configs} == {"digits", "lstm", "gpt", "gpt_flat"}
    assert {c["s"] for c in configs if c["kind"] == "train"} == {0, 1, 2}
    assert sum(c["kind"] == "cost" for c in configs) == 4
    # The transformer's winners again at 2x the steps (--quick's --long-factors), 2 seeds each.
    longer = [c for c in configs if c["task"] == "gpt" and c["params"]["steps"] == 32]
    assert len(longer) == 3 * 2
    # gpt_flat: its steps searched first (16, 32, 64 at most), then every run of it at that count.
    flat_steps = {c["params"]["steps"] for c in configs if c["task"] == "gpt_flat"}
    chosen = next(r for r in data["rows"] if r["task"] == "gpt_flat")["steps"]
    assert chosen in (16, 32, 64) and flat_steps <= {16, 32, 64}
    assert {c["params"]["steps"] for c in configs if c["task"] == "gpt_flat" and c.get("seed")} == {
        chosen
    }
    assert any(c["seed"] == 1 for c in configs if c["kind"] == "train")  # the winners' reruns
    report = (out / "evidence_quick_cpu.md").read_text()
    for heading in ("## Best against best", "## Time to target", "## Where the gain disappears",
                    "## Learning-rate sweep", "## Did training flatten?", "## Sizes",
                    "## Longer training: the winners, 2x the steps",
                    "## Trained until flat: how many steps"):  # fmt: skip
        assert heading in report, heading
    assert "| char-level decoder-only transformer LM | AdamW |" in report
    longer_row = next(
        x
        for x in report.splitlines()
        if x.startswith("| char-level decoder-only transformer LM | AdamW | 32 |")
    )
    assert longer_row.count(" %") >= 4  # the base against the regular run, and 3 flatness figures
    assert "95 % CI" in report and "command: `python benchmarks/evidence.py --quick" in report
    for png in ("evidence_quick_cpu.png", "evidence_curves_quick_cpu.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data["rows"]) == 4 and data["rows"][0]["variants"]["1"]["own"]["n"] == 2

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
    # A winner's rerun (seed 1): dropping a sweep point could move a best and grow the grid.
    index = next(i for i, line in enumerate(lines) if json.loads(line)["config"].get("seed") == 1)
    dropped = json.loads(lines[index])["config"]
    results.write_text("\n".join(lines[:index] + lines[index + 1 :]) + "\n")
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


def test_grid_grows_past_an_edge_best_once_per_finished_sweep(tmp_path):
    ev = load_evidence()
    args = ev.parse_args(["--quick", "--out", str(tmp_path), "--tasks", "lstm", "--extend", "2"])
    store = ev.Store(tmp_path / "runs.jsonl")
    plan = ev.Plan(args, store)

    def finish(mult, loss):
        for s in ev.VARIANTS:
            result = dict(diverged=False, curve=[[1, loss]], train_s=1.0, wall_s=1.0)
            result |= dict(valid=dict(loss=loss), test=dict(loss=loss))
            store.add(dict(config=plan.cfg("lstm", "adamw", s, mult, 0), result=result))

    assert plan.grid("lstm", "adamw") == [0.5, 2.0]  # nothing run yet: no best, no growth
    finish(0.5, 2.0)
    finish(2.0, 1.5)
    assert plan.grid("lstm", "adamw") == [0.5, 2.0, 4.0]  # the best is the top end
    assert {c["lr_mult"] for c in plan.sweep() if store.get(c) is None} == {4.0}
    finish(4.0, 1.4)
    assert plan.grid("lstm", "adamw") == [0.5, 2.0, 4.0, 8.0]  # still the top: once more
    finish(8.0, 1.6)
    assert plan.grid("lstm", "adamw") == [0.5, 2.0, 4.0, 8.0]  # x4 is inside now: done
    assert plan.best_mult("lstm", "adamw", 0) == 4.0 and not plan.at_edge("lstm", "adamw", 0)


def test_gpt_flat_doubles_its_steps_until_more_training_buys_little(tmp_path):
    ev = load_evidence()
    args = ev.parse_args(["--quick", "--out", str(tmp_path), "--tasks", "gpt_flat"])

    def plan_with(curves: dict[int, list[float]]):
        """A plan whose pilots at these step counts ended with these validation curves."""
        plan = ev.Plan(args, ev.Store(tmp_path / f"runs{len(list(tmp_path.iterdir()))}.jsonl"))
        for factor, values in curves.items():
            cfg = plan.pilot("gpt_flat", factor)
            steps = cfg["params"]["steps"]
            curve = [[steps * (i + 1) // len(values), v] for i, v in enumerate(values)]
            result = dict(diverged=False, curve=curve, train_s=1.0, wall_s=1.0)
            plan.store.add(dict(config=cfg, result=result | dict(valid=dict(loss=values[-1]))))
        return plan

    plan = plan_with({})
    assert plan.factors() == [1, 2, 4]  # --quick: up to 4x
    assert plan.factor("gpt_flat") is None and plan.factor("gpt") == 1
    first = plan.budget("gpt_flat")  # two candidates at a time, one per core
    assert [c["params"]["steps"] for c in first] == [16, 32]
    assert {(c["optimizer"], c["s"], c["lr_mult"], c["seed"]) for c in first} == {
        ("adamw", 0, 1.0, 0)
    }
    with pytest.raises(RuntimeError, match="not decided"):
        plan.cfg("gpt_flat", "adamw", 1, 2.0, 0)

    falling = [3.0, 2.8, 2.6, 2.5]  # 3.8 % over the last quarter: not flat
    flat = [3.0, 2.5, 2.3, 2.29]  # 0.4 %: flat
    plan = plan_with({1: falling})
    assert plan.factor("gpt_flat") is None  # not flat, and 2x not run yet
    assert [c["params"]["steps"] for c in plan.budget("gpt_flat")] == [32, 64]
    plan = plan_with({1: falling, 2: flat})
    assert plan.factor("gpt_flat") == 2 and plan.budget("gpt_flat") == []
    cfg = plan.cfg("gpt_flat", "adamw", 1, 2.0, 3)
    assert cfg["params"]["steps"] == 32 and cfg["params"]["warmup"] == 8  # schedule stretched
    assert plan.cfg("gpt_flat", "adamw", 0, 1.0, 0) == plan.pilot("gpt_flat", 2)  # a sweep run
    assert [(p["steps"], p["chosen"]) for p in plan.budget_summary("gpt_flat")] == [
        (16, False),
        (32, True),
    ]
    assert plan.pairs() == [("gpt_flat", "adamw")]
    full = ev.Plan(ev.parse_args(["--tasks", "gpt_flat"]), ev.Store(tmp_path / "full.jsonl"))
    assert full.pairs() == [("gpt_flat", "adam"), ("gpt_flat", "adamw")]  # no SGDM
    assert full.pilot("gpt_flat", 1)["optimizer"] == "adamw"  # one step count for both
    # Not flat, but twice the steps end no lower (overfitting): more training does not help.
    plan = plan_with({1: falling, 2: [3.0, 2.45, 2.49, 2.52]})
    assert plan.factor("gpt_flat") == 1
    assert [p["chosen"] for p in plan.budget_summary("gpt_flat")] == [True, False]
    # Twice the steps end 2 % lower: keep doubling; never flat: the cap.
    plan = plan_with({1: falling, 2: [3.0, 2.7, 2.55, 2.45], 4: [3.0, 2.6, 2.5, 2.4]})
    assert plan.factor("gpt_flat") == 4 and plan.budget("gpt_flat") == []


def test_best_lr_is_chosen_by_validation_and_skips_diverged_runs(tmp_path):
    ev = load_evidence()
    args = ev.parse_args(["--quick", "--out", str(tmp_path), "--tasks", "digits", "--extend", "0"])
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
