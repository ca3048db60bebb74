"""Mixed precision: bf16 autocast on the CPU, bf16 weights, and GradScaler's skipped steps.

A skipped step is the delicate case: ``GradScaler.step`` never calls ``optimizer.step()`` when a
gradient is inf/nan, so the runtime's step pre-hook does not fire; the weights after that step
must still be exactly θt. Without an explicit restore, that rests on
``install_gradscaler_restore()``, which the first ``predict`` calls and which can be removed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import xgrad_rewrite.runtime as xgrad  # noqa: E402

LR, S, STEPS = 0.1, 2, 5


def make_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    return model.to(dtype)


def batch(step: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return torch.randn(16, 8, generator=g).to(dtype), torch.randn(16, 4, generator=g).to(dtype)


def snapshot(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(model: torch.nn.Module, weights: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, w) for p, w in zip(model.parameters(), weights, strict=True))


def bf16_loss(model: torch.nn.Module, step: int) -> torch.Tensor:
    x, y = batch(step)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    return torch.nn.functional.mse_loss(out.float(), y)


def test_bf16_autocast_equals_hand_written_prediction():
    """SGDM's θ̂ = θt − lr·s·v_t (Table I) written out by hand, forwards under bf16 autocast."""
    model, hand = make_model(), make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    hand_opt = torch.optim.SGD(hand.parameters(), lr=LR, momentum=0.9)
    for step in range(STEPS):
        theta = snapshot(model)
        opt.zero_grad()
        xgrad.predict(opt, s=S)
        bf16_loss(model, step).backward()
        xgrad.restore(opt)
        assert same(model, theta), "restore must give θt back bit for bit"
        opt.step()

        hand_opt.zero_grad()
        hand_theta = snapshot(hand)
        with torch.no_grad():
            for p in hand.parameters():
                v = hand_opt.state[p].get("momentum_buffer")
                if v is not None:
                    p.sub_(v, alpha=LR * S)
        bf16_loss(hand, step).backward()
        with torch.no_grad():
            for p, t in zip(hand.parameters(), hand_theta, strict=True):
                p.copy_(t)
        hand_opt.step()
    for p, q in zip(model.parameters(), hand.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert not same(model, snapshot(make_model())), "training moved the weights"


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_bf16_weights_restore_bit_exact(optimizer):
    model = make_model(torch.bfloat16)
    opt = optimizer(
        model.parameters(), lr=1e-2, **({"momentum": 0.9} if optimizer is torch.optim.SGD else {})
    )
    moved = False
    for step in range(STEPS):
        x, y = batch(step, torch.bfloat16)
        theta = snapshot(model)
        opt.zero_grad()
        xgrad.predict(opt, s=S)
        moved |= not same(model, theta)
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        torch.nn.functional.mse_loss(model(x), y).backward()
        xgrad.restore(opt)
        assert same(model, theta)
        opt.step()
    assert moved, "prediction must move bf16 weights once there is optimizer state"


def scaled_step(model, opt, scaler, step: int, poison: bool, restore: str) -> None:
    """One fp16-autocast GradScaler step; `poison` makes a gradient inf so the step is skipped."""
    x, y = batch(step)
    opt.zero_grad()
    if restore == "context":
        with xgrad.predicted(opt, s=S):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = torch.nn.functional.mse_loss(model(x).float(), y)
            scaler.scale(loss).backward()
    else:
        xgrad.predict(opt, s=S)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        scaler.scale(loss).backward()
    if poison:
        next(model.parameters()).grad.view(-1)[0] = float("inf")
    if restore == "explicit":  # where the codemod puts it: before scaler.step / unscale_
        xgrad.restore(opt)
    scaler.step(opt)
    scaler.update()


def train_with_a_skip(restore: str):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for step in range(3):
        scaled_step(model, opt, scaler, step, poison=False, restore=restore)
    theta, scale = snapshot(model), scaler.get_scale()
    scaled_step(model, opt, scaler, 3, poison=True, restore=restore)
    assert scaler.get_scale() == scale / 2, "the poisoned step must have been skipped"
    return model, opt, scaler, theta


@pytest.mark.parametrize("restore", ["explicit", "context"])
def test_gradscaler_skipped_step_leaves_theta_t(restore):
    model, opt, scaler, theta = train_with_a_skip(restore)
    assert same(model, theta)
    assert not xgrad.is_predicted(opt)
    scaled_step(model, opt, scaler, 4, poison=False, restore=restore)  # training goes on
    assert not same(model, theta)


def test_gradscaler_skipped_step_relying_on_the_step_pre_hook():
    """No restore call at all (a wrapper doing backward and step together): only the hook."""
    model, opt, _, theta = train_with_a_skip("hook")
    assert not xgrad.is_predicted(opt)
    assert same(model, theta)


def test_uninstall_gradscaler_restore_puts_torch_step_back():
    """Importing patches nothing, the first predict patches, uninstall gives torch's own back."""
    code = textwrap.dedent(
        """
        import torch
        import xgrad_rewrite.runtime as xgrad
        torch_step = torch.amp.GradScaler.step
        p = torch.zeros(2, requires_grad=True)
        xgrad.predict(torch.optim.SGD([p], lr=0.1))
        patched = torch.amp.GradScaler.step
        xgrad.uninstall_gradscaler_restore()
        xgrad.predict(torch.optim.SGD([p], lr=0.1))  # a new optimizer does not patch it again
        print(patched is not torch_step, patched.__wrapped__ is torch_step,
              torch.amp.GradScaler.step is torch_step)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_gradscaler_guarantee_holds_while_installed_only():
    """Installed: a skipped step leaves θt with no restore call. Removed: θ̂ stays after it."""
    xgrad.uninstall_gradscaler_restore()
    torch_step = torch.amp.GradScaler.__dict__["step"]
    try:
        assert not hasattr(torch_step, "__wrapped__")
        model, opt, _, theta = train_with_a_skip("hook")
        assert torch.amp.GradScaler.__dict__["step"] is torch_step, "predict must not reinstall"
        assert xgrad.is_predicted(opt) and not same(model, theta), "θ̂ left by the skipped step"
        xgrad.restore(opt)
        assert same(model, theta)

        xgrad.install_gradscaler_restore()
        xgrad.install_gradscaler_restore()  # idempotent: one wrapper, around torch's own
        model, opt, _, theta = train_with_a_skip("hook")
        assert not xgrad.is_predicted(opt)
        assert same(model, theta)
    finally:
        xgrad.install_gradscaler_restore()  # as the rest of the session expects it
    assert torch.amp.GradScaler.__dict__["step"].__wrapped__ is torch_step


def test_uninstall_refuses_to_drop_a_later_patch():
    xgrad.install_gradscaler_restore()
    ours = torch.amp.GradScaler.__dict__["step"]

    def theirs(self, optimizer, *args, **kwargs):
        return ours(self, optimizer, *args, **kwargs)

    torch.amp.GradScaler.step = theirs
    try:
        with pytest.raises(RuntimeError, match="patched again"):
            xgrad.uninstall_gradscaler_restore()
        assert torch.amp.GradScaler.__dict__["step"] is theirs
    finally:
        torch.amp.GradScaler.step = ours
    xgrad.install_gradscaler_restore()
    assert torch.amp.GradScaler.__dict__["step"] is ours
