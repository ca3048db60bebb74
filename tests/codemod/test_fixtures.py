"""Golden fixtures: fixtures/NAME.in.py -> fixtures/NAME.out.py, byte for byte.

Expected diagnostics are in fixtures/NAME.diagnostics.txt (none when it is absent). Options come
from fixtures/NAME.options.json when present (``s``, ``optimizers``, ``mode``),
else the defaults. Revert of NAME.out.py must give NAME.reverted.py when present (fixtures whose
input was already patched), else NAME.in.py. Files are read as bytes and decoded with their
encoding cookie so CRLF, latin-1 and trailing whitespace survive.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import FIXTURES, ROOT
from support.golden import NAMES, expected_diagnostics, format_diagnostics, options_for, read

from xgrad_rewrite.codemod import Options, ParseError, rewrite

# Fixtures that train on synthetic data on a CPU in seconds; run for real after patching.
# Value: whether the script evaluates under torch.no_grad() (checked to run on θt).
RUNNABLE: dict[str, bool] = {
    "accumulation_conditional": True,
    "already_patched": True,
    "amp_gradscaler_clip": False,
    "crlf_cookie_future": False,
    "distillation_frozen_teacher": True,
    "eval_in_loop": True,
    "forward_in_helper": True,
    "mnist_train_fn": True,
    "nanogpt_micro_steps": True,
    "one_line_backward_step": True,
    "optim_alias_rl": False,
    "plain_adam_regression": True,
    "repatch_other_s": True,
    "trainer_class": True,
}


# Scripts in the shapes people write that are hard to patch (trained models taken for frozen,
# `.step()` of things that are not optimizers, several optimizers after one backward, optimizers
# bound under a condition, forwards in helpers, no-grad code between forward and backward): all
# train on synthetic data in seconds. Each is run patched under the verifier (no problem may be
# found, unless the fixture was left unchanged with a note) and with XGRAD_DISABLE=1.
SHAPES = sorted(n for n in NAMES if n.startswith("shape_"))

# --mode fx fixtures: run for real; the model's forward must be the FX path's, with no eager calls.
# Value: the model's class (torch.fx tracing itself calls the leaf modules once, unpredicted).
FX_RUNNABLE = {"fx_mode_cnn": "Sequential", "fx_mode_mlp": "MLP"}


def test_enough_fixtures() -> None:
    assert len(NAMES) >= 22
    for name in NAMES:
        assert (FIXTURES / f"{name}.out.py").exists(), name


@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str) -> None:
    source, encoding = read(FIXTURES / f"{name}.in.py")
    result = rewrite(source, options_for(name))
    expected = (FIXTURES / f"{name}.out.py").read_bytes()
    assert result.text.encode(encoding) == expected
    assert result.changed == (expected != (FIXTURES / f"{name}.in.py").read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_output_compiles(name: str) -> None:
    compile((FIXTURES / f"{name}.out.py").read_bytes(), f"{name}.out.py", "exec")


@pytest.mark.parametrize("name", NAMES)
def test_second_pass_changes_nothing(name: str) -> None:
    source, _ = read(FIXTURES / f"{name}.out.py")
    result = rewrite(source, options_for(name))
    assert result.text == source
    assert not result.changed


@pytest.mark.parametrize("name", NAMES)
def test_revert_gives_back_the_original(name: str) -> None:
    source, encoding = read(FIXTURES / f"{name}.out.py")
    original = FIXTURES / f"{name}.reverted.py"
    if not original.exists():
        original = FIXTURES / f"{name}.in.py"
    result = rewrite(source, Options(revert=True))
    assert result.text.encode(encoding) == original.read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_diagnostics(name: str) -> None:
    source, _ = read(FIXTURES / f"{name}.in.py")
    result = rewrite(source, options_for(name))
    assert format_diagnostics(result.diagnostics) == expected_diagnostics(name)


def test_unpatched_files_stay_byte_identical() -> None:
    source, _ = read(FIXTURES / "lbfgs_closure.in.py")
    result = rewrite(source, Options(s=2))
    assert result.text == source and not result.changed
    assert "xgrad" not in result.text


def test_parse_error_has_position() -> None:
    with pytest.raises(ParseError) as info:
        rewrite("import torch\n\nfor x in loader:\n    loss = model(x\n    loss.backward()\n")
    assert info.value.line in (4, 5)
    assert info.value.column >= 0
    assert info.value.message


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every runnable patched fixture (and one unpatched control), run once in one process."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("runs") / "runs.json"
    scripts = [str(FIXTURES / f"{n}.out.py") for n in (*RUNNABLE, *FX_RUNNABLE, *SHAPES)]
    scripts.append(str(FIXTURES / "plain_adam_regression.in.py"))
    harness = ROOT / "tests" / "support" / "fixture_harness.py"
    subprocess.run(
        [sys.executable, str(harness), str(out), *scripts],
        check=True,
        cwd=tmp_path_factory.mktemp("cwd"),  # scripts that save files write them there
        timeout=600,
    )
    data = json.loads(out.read_text())
    return {Path(k).name: v for k, v in data.items()}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_patched_fixture_trains_on_predicted_weights(name: str, runs: dict[str, dict]) -> None:
    run = runs[f"{name}.out.py"]
    if run["error"] and "no weight-prediction rule" in run["error"]:
        pytest.skip(f"runtime has no rule for this optimizer yet: {run['error'][-200:]}")
    assert run["error"] is None, run["error"]
    assert run["predict_calls"] > 0
    assert run["moved"] > 0, "predict never moved the weights"
    training = [r for r in run["records"] if r["grad"] and r["owned"] and r["stepped"]]
    assert training, "no training forward after the first step"
    assert all(r["predicted"] for r in training), "a training forward ran on θt"
    evaluation = [r for r in run["records"] if not r["grad"]]
    assert all(not r["any_predicted"] for r in evaluation), "an evaluation forward ran on θ̂"
    if RUNNABLE[name]:
        assert any(r["owned"] for r in evaluation), "expected an evaluation forward"


def test_unpatched_control_never_predicts(runs: dict[str, dict]) -> None:
    run = runs["plain_adam_regression.in.py"]
    assert run["error"] is None
    assert run["predict_calls"] == 0
    assert not any(r["predicted"] for r in run["records"])


@pytest.mark.parametrize("name", sorted(FX_RUNNABLE))
def test_fx_patched_fixture_trains_through_the_fx_path(name: str, runs: dict[str, dict]) -> None:
    run = runs[f"{name}.out.py"]
    assert run["error"] is None, run["error"]
    assert run["predict_calls"] == 0
    model = [r for r in run["records"] if r["module"] == FX_RUNNABLE[name]]
    training = [r for r in model if r["grad"]]
    assert training and all(r["fx"] for r in training)


@pytest.mark.parametrize("name", sorted([*RUNNABLE, *FX_RUNNABLE]))
def test_patched_fixture_passes_the_verifier(name: str, runs: dict[str, dict]) -> None:
    """The run-time verifier (XGRAD_VERIFY) as oracle: no training forward or step left
    unpredicted, no evaluation on θ̂. Optimizers the fixture's options leave unpatched are
    not asked about."""
    run = runs[f"{name}.out.py"]
    if run["error"]:
        pytest.skip("did not run (the tests above say why)")
    patched = options_for(name).optimizers
    findings = [f for f in run["findings"] if not patched or f["optimizer"] in patched]
    assert findings == [], "\n".join(f"{f['path']}:{f['line']}: {f['message']}" for f in findings)


def test_verifier_flags_the_unpatched_control(runs: dict[str, dict]) -> None:
    kinds = {(f["kind"], f["optimizer"]) for f in runs["plain_adam_regression.in.py"]["findings"]}
    assert kinds == {("unpredicted-forward", "optimizer"), ("unpredicted-step", "optimizer")}


@pytest.mark.parametrize("name", NAMES)
def test_step_reports_point_at_the_inserted_calls(name: str) -> None:
    source, _ = read(FIXTURES / f"{name}.in.py")
    result = rewrite(source, options_for(name))
    lines = result.text.splitlines()
    for step in result.steps:
        if step.predict_line is not None:
            assert ".predict" in lines[step.predict_line - 1], step
            assert step.optimizer in lines[step.predict_line - 1], step
        if step.restore_line is not None:
            assert f".restore({step.optimizer})" in lines[step.restore_line - 1], step
    for diagnostic in result.diagnostics:
        assert 1 <= diagnostic.line <= len(lines)


@pytest.mark.parametrize("name", SHAPES)
def test_hard_shape_runs_patched_and_passes_the_verifier(name: str, runs: dict[str, dict]) -> None:
    run = runs[f"{name}.out.py"]
    assert run["error"] is None, run["error"]
    unchanged = (FIXTURES / f"{name}.out.py").read_bytes() == (
        FIXTURES / f"{name}.in.py"
    ).read_bytes()
    if unchanged:
        assert expected_diagnostics(name), "a fixture left unchanged must say why"
        return  # left with a note: its optimizer steps unpredicted, as the note says
    problems = [f for f in run["findings"] if f["kind"] != "no-grad-on-predicted"]
    assert problems == [], "\n".join(f"{f['path']}:{f['line']}: {f['message']}" for f in problems)
    assert run["predict_calls"] > 0


@pytest.fixture(scope="module")
def disabled_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """What every runnable fixture prints: the original, and the patched copy under
    XGRAD_DISABLE=1 (each set in one process of ``run_scripts.py``, the two side by side)."""
    pytest.importorskip("torch")
    names = [*RUNNABLE, *SHAPES]
    env = {**os.environ, "XGRAD_DISABLE": "1"}
    env.pop("XGRAD_VERIFY", None)
    cwd = tmp_path_factory.mktemp("disabled")
    runner = ROOT / "tests" / "support" / "run_scripts.py"
    jobs = {}
    for suffix in ("in", "out"):
        scripts = [str(FIXTURES / f"{n}.{suffix}.py") for n in names]
        out = cwd / f"{suffix}.json"
        command = [sys.executable, str(runner), str(out), *scripts]
        jobs[suffix] = (out, subprocess.Popen(command, cwd=cwd, env=env))
    results = {}
    for suffix, (out, process) in jobs.items():
        assert process.wait(timeout=600) == 0
        results[suffix] = {Path(k).name: v for k, v in json.loads(out.read_text()).items()}
    return {n: (results["in"][f"{n}.in.py"], results["out"][f"{n}.out.py"]) for n in names}


_WALL_CLOCK = re.compile(r"\d+(\.\d+)? ?(ms|sec|s)\b")


@pytest.mark.parametrize("name", sorted([*RUNNABLE, *SHAPES]))
def test_disabled_patch_prints_what_the_original_prints(
    name: str, disabled_runs: dict[str, tuple[dict, dict]]
) -> None:
    """XGRAD_DISABLE=1 turns predict/restore into no-ops: the patched script must then be the
    original script, output for output (wall-clock figures such as ``12.3ms`` aside)."""
    original, patched = disabled_runs[name]
    assert original["error"] is None, original["error"]
    assert patched["error"] is None, patched["error"]
    assert original["stdout"].strip(), "the fixture prints nothing to compare"
    assert _WALL_CLOCK.sub("<time>", patched["stdout"]) == _WALL_CLOCK.sub(
        "<time>", original["stdout"]
    )
