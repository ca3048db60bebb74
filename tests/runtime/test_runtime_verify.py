"""XGRAD_VERIFY: the run-time check that a patch is right (xgrad_rewrite/runtime/verify.py).

Small training loops, run in this process with the verifier on; each finding is looked for at
the line marked `# <- name` in the loop's source. The environment switch, the summary at exit
and "off means no hooks" run in subprocesses.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import xgrad_rewrite.runtime as xgrad  # noqa: E402
from xgrad_rewrite.runtime import verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FORWARD, STEP, NO_GRAD = (
    verify.UNPREDICTED_FORWARD,
    verify.UNPREDICTED_STEP,
    verify.NO_GRAD_ON_PREDICTED,
)


@pytest.fixture(autouse=True)
def watching():
    """The verifier on (without warnings) for each test, and off again after it."""
    was_on = verify.enabled()
    verify.enable(warn=False)
    verify.reset()
    yield
    if was_on:
        verify.reset()
    else:
        verify.disable()


def line_of(fn, marker: str) -> int:
    lines, start = inspect.getsourcelines(fn)
    hits = [start + i for i, text in enumerate(lines) if f"# <- {marker}" in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def found(kind: str | None = None) -> list[tuple[str, int, str]]:
    return sorted(
        (f.kind, f.line, f.optimizer)
        for f in verify.report()
        if kind is None or f.kind == kind
        if f.path == __file__
    )


def problems() -> list[verify.Finding]:
    return [f for f in verify.report() if f.problem]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)


def mse(out, y):
    return ((out - y) ** 2).mean()


# -- one optimizer -------------------------------------------------------------------------


def correct(steps: int = 4) -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        xgrad.predict(opt, s=2)
        mse(model(x), y).backward()
        xgrad.restore(opt)
        opt.step()
        with torch.no_grad():  # evaluation after restore: θt
            model(x)


def test_correct_patch_reports_nothing() -> None:
    correct()
    assert verify.report() == []


def test_correct_patch_reports_nothing_when_disabled(monkeypatch) -> None:
    monkeypatch.setenv("XGRAD_DISABLE", "1")  # predict is a no-op but still counts
    correct()
    assert verify.report() == []


def predict_after_backward() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        opt.zero_grad()
        loss = mse(model(x), y)  # <- forward
        loss.backward()
        xgrad.predict(opt, s=2)
        xgrad.restore(opt)
        opt.step()


def test_predict_after_the_forward_is_an_unpredicted_forward() -> None:
    predict_after_backward()
    assert found() == [(FORWARD, line_of(predict_after_backward, "forward"), "opt")]
    (finding,) = problems()
    assert finding.count == 3  # steps 2-4: before the first step there is nothing to predict
    assert "xgrad.predict(opt)" in finding.message and finding.where.endswith(f":{finding.line}")


def forward_after_restore() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        xgrad.predict(opt, s=1)
        mse(model(x), y).backward()
        xgrad.restore(opt)
        mse(model(x), y).backward()  # <- forward
        opt.step()


def test_training_forward_after_restore_is_reported() -> None:
    forward_after_restore()
    assert found() == [(FORWARD, line_of(forward_after_restore, "forward"), "opt")]


def missing_predict() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        mse(model(x), y).backward()  # <- forward
        opt.step()  # <- step


def test_missing_predict_is_an_unpredicted_step_and_forward() -> None:
    missing_predict()
    assert found() == [
        (FORWARD, line_of(missing_predict, "forward"), "opt"),
        (STEP, line_of(missing_predict, "step"), "opt"),
    ]
    step = next(f for f in verify.report() if f.kind == STEP)
    assert step.count == 3  # steps 2 and 3, and the first: it is never predicted


def eval_between() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        xgrad.predict(opt, s=2)
        loss = mse(model(x), y)
        with torch.no_grad():
            model(x)  # <- eval
        loss.backward()
        xgrad.restore(opt)
        opt.step()


def test_no_grad_forward_on_predicted_weights_is_information() -> None:
    eval_between()
    assert found() == [(NO_GRAD, line_of(eval_between, "eval"), "opt")]
    assert problems() == []


def test_accumulation_predict_per_micro_batch_is_fine() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    opt.zero_grad()
    for i in range(12):
        xgrad.predict(opt, s=1)
        (mse(model(x), y) / 4).backward()
        if (i + 1) % 4 == 0:
            xgrad.restore(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
    assert verify.report() == []


def warm_up_step_then_patched() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mse(model(x), y).backward()
    opt.step()  # a first step before the loop: nothing to predict yet
    for _ in range(3):
        opt.zero_grad()
        xgrad.predict(opt, s=2)
        mse(model(x), y).backward()
        xgrad.restore(opt)
        opt.step()


def one_unpredicted_step() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    mse(model(x), y).backward()
    opt.step()  # <- step


def test_first_step_is_excused_unless_never_predicted() -> None:
    warm_up_step_then_patched()
    assert verify.report() == []
    verify.reset()
    one_unpredicted_step()
    (finding,) = verify.report()
    assert (finding.kind, finding.line) == (STEP, line_of(one_unpredicted_step, "step"))
    assert "never predicted" in finding.message


class Trainer:
    def __init__(self) -> None:
        self.model, (self.x, self.y) = mlp(), data()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)

    def step(self) -> None:
        self.optimizer.zero_grad()
        mse(self.model(self.x), self.y).backward()
        self.optimizer.step()


def test_optimizer_named_by_attribute() -> None:
    trainer = Trainer()
    for _ in range(2):
        trainer.step()
    assert {f.optimizer for f in problems()} == {"self.optimizer"}


# -- two optimizers: a GAN -----------------------------------------------------------------


def gan(predict_d: bool = True, zero_d: str = "none", clip_d: bool = False) -> None:
    """G and D with their own optimizers; G's step runs D (not predicted for D) on G's output.

    zero_d: how D's gradients are reset before D's step: "none" (set to None), "zeros"
    (`set_to_none=False`) or "" (not reset: the G step's gradients reach D's step).
    """
    torch.manual_seed(0)
    net_g = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))
    net_d = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(net_d.parameters(), lr=1e-3)
    real = torch.randn(16, 4)
    for _ in range(4):
        # generator step
        opt_g.zero_grad()
        xgrad.predict(opt_g, s=1)
        fake = net_g(torch.randn(16, 2))
        loss_g = -net_d(fake).mean()  # <- critic in G's step
        loss_g.backward()
        xgrad.restore(opt_g)
        opt_g.step()
        # critic step
        if zero_d:
            opt_d.zero_grad(set_to_none=zero_d == "none")
        if predict_d:
            xgrad.predict(opt_d, s=1)
        loss_d = net_d(fake.detach()).mean() - net_d(real).mean()  # <- D forward
        loss_d.backward()
        if predict_d:
            xgrad.restore(opt_d)
        if clip_d:
            torch.nn.utils.clip_grad_norm_(net_d.parameters(), 0.5)
        opt_d.step()  # <- D step
        if not zero_d:
            opt_d.zero_grad()


@pytest.mark.parametrize("zero_d", ["none", "zeros"])
def test_gan_critic_forward_in_generator_step_with_gradients_reset_is_fine(zero_d) -> None:
    gan(zero_d=zero_d)
    assert verify.report() == []


@pytest.mark.parametrize("clip_d", [False, True])
def test_gan_critic_gradients_from_generator_step_reaching_its_step(clip_d) -> None:
    gan(zero_d="", clip_d=clip_d)
    assert found() == [(FORWARD, line_of(gan, "critic in G's step"), "opt_d")]


def test_gan_with_only_the_generator_patched() -> None:
    gan(predict_d=False)
    assert found() == [
        (FORWARD, line_of(gan, "D forward"), "opt_d"),
        (STEP, line_of(gan, "D step"), "opt_d"),
    ]


def test_gradient_penalty_through_unpredicted_forward_taints_nothing() -> None:
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        xgrad.predict(opt, s=1)
        mse(model(x), y).backward()
        xgrad.restore(opt)
        # after restore: an unpredicted forward whose gradients never land in p.grad
        inputs = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(inputs).sum(), inputs)
        opt.step()
    assert verify.report() == []


def test_fx_path_is_predicted_by_its_graph() -> None:
    pytest.importorskip("torch.fx")
    model, (x, y) = mlp(), data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model = xgrad.fx.predictive(model, opt, s=2)
    for _ in range(3):
        opt.zero_grad()
        mse(model(x), y).backward()
        opt.step()
    assert verify.report() == []


# -- warnings, API -------------------------------------------------------------------------


def test_warns_once_per_place() -> None:
    verify.enable(warn=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        missing_predict()
        missing_predict()
    ours = [w for w in caught if issubclass(w.category, verify.XGradVerifyWarning)]
    assert sorted((w.filename, w.lineno) for w in ours) == [
        (__file__, line_of(missing_predict, "forward")),
        (__file__, line_of(missing_predict, "step")),
    ]


def test_disable_removes_every_hook() -> None:
    from torch.nn.modules import module
    from torch.optim import optimizer

    verify.disable()
    before = [
        dict(d)
        for d in (
            module._global_forward_pre_hooks,
            module._global_forward_hooks,
            optimizer._global_optimizer_pre_hooks,
        )
    ]
    verify.enable(warn=False)
    assert verify.enabled() and len(module._global_forward_hooks) == len(before[1]) + 1
    verify.disable()
    assert not verify.enabled() and verify.report() == []
    after = [
        dict(d)
        for d in (
            module._global_forward_pre_hooks,
            module._global_forward_hooks,
            optimizer._global_optimizer_pre_hooks,
        )
    ]
    assert after == before


# -- the environment switch, in a fresh process --------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import torch
    from torch.nn.modules import module
    from torch.optim import optimizer

    def hooks():
        return (
            len(module._global_forward_pre_hooks),
            len(module._global_forward_hooks),
            len(optimizer._global_optimizer_pre_hooks),
            len(optimizer._global_optimizer_post_hooks),
        )

    before = hooks()
    import xgrad_rewrite.runtime as xgrad
    from xgrad_rewrite.runtime import verify
    print("HOOKS", before == hooks(), verify.enabled())

    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()  # MARK-FORWARD
        opt.step()  # MARK-STEP
    """
)


def run_script(tmp_path: Path, value: str | None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGRAD_")}
    if value is not None:
        env["XGRAD_VERIFY"] = value
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.parametrize(("value", "on"), [("", False), (" 0 ", False), ("1", True), ("yes", True)])
def test_switch_values(monkeypatch, value: str, on: bool) -> None:
    monkeypatch.setenv("XGRAD_VERIFY", value)
    assert verify._env_on() is on


def test_off_installs_nothing(tmp_path: Path) -> None:
    out = run_script(tmp_path, None)
    assert "HOOKS True False" in out.stdout
    assert "xgrad verify" not in out.stderr


def test_on_warns_and_prints_a_summary_at_exit(tmp_path: Path) -> None:
    out = run_script(tmp_path, "1")
    assert "HOOKS False True" in out.stdout
    lines = SCRIPT.splitlines()
    forward = next(i for i, t in enumerate(lines, 1) if "MARK-FORWARD" in t)
    step = next(i for i, t in enumerate(lines, 1) if "MARK-STEP" in t)
    assert f"train.py:{forward}: XGradVerifyWarning" in out.stderr
    assert f"train.py:{step}: XGradVerifyWarning" in out.stderr
    summary = out.stderr[out.stderr.index("xgrad verify: 2 problem(s)") :]
    assert f"problem: train.py:{forward}: training forward on parameters of opt" in summary
    assert f"problem: train.py:{step}: opt.step() without xgrad.predict(opt)" in summary
