"""FX path: the traced model trains exactly like the eager predict/restore path."""

from __future__ import annotations

import pytest
import torch
from support.fx_models import (
    MODELS,
    OPTIMIZERS,
    assert_same,
    batches,
    pair,
    run_both,
    train_eager,
    train_fx,
)

import xgrad_rewrite.fx as xfx
import xgrad_rewrite.runtime as xgrad


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and fair to a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_losses_and_gradients_equal_eager_path(model_name, opt_name):
    rec_e, rec_f, _, _ = run_both(model_name, opt_name, steps=5, s=2)
    assert_same(rec_e, rec_f)
    # the prediction changed something: step 2's loss is not the one at θt
    assert len(rec_f[0]) == 5


@pytest.mark.parametrize(
    ("model_name", "opt_name"), [("mlp", "Adam"), ("cnn", "SGDM"), ("tied", "AdamW")]
)
def test_twenty_steps_end_with_the_same_weights(model_name, opt_name):
    _, _, eager, fx = run_both(model_name, opt_name, steps=20, s=1)
    state_e, state_f = eager.state_dict(), fx.state_dict()
    assert state_e.keys() == state_f.keys()  # no prediction buffers in the checkpoint
    for name in state_e:
        torch.testing.assert_close(state_f[name], state_e[name], rtol=1e-5, atol=1e-6, msg=name)


def test_forward_reads_theta_minus_lr_s_delta():
    """After one SGDM step the FX forward equals a forward on θ − lr·s·v (eq. 31), not on θ."""
    _, fx = pair("twice")
    plain, _ = pair("twice")
    opt = torch.optim.SGD(fx.parameters(), lr=0.5, momentum=0.9)
    xfx.predictive(fx, opt, s=2)
    x, y = batches("twice", 1)[0]
    torch.testing.assert_close(fx(x), plain(x), rtol=0, atol=0)  # d = 0 before the first step
    torch.nn.functional.cross_entropy(fx(x), y).backward()
    opt.step()
    with torch.no_grad():
        for p, q in zip(fx.parameters(), plain.parameters(), strict=True):
            q.copy_(p - 0.5 * 2 * opt.state[p]["momentum_buffer"])
    torch.testing.assert_close(fx(x), plain(x), rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        assert not torch.allclose(fx(x), plain(x))  # no_grad: the model's own forward, on θ
    assert "block_0_weight_predicted = torch.addcmul" in fx.forward.graph_module.code


@pytest.mark.parametrize("opt_name", ["SGD", "RMSprop"])
def test_rules_that_need_the_last_gradient(opt_name):
    """SGD without momentum and RMSprop read g_t, cached by the runtime's pre-step hook."""
    OPTIMIZERS["SGD"] = (torch.optim.SGD, dict(lr=0.1))
    OPTIMIZERS["RMSprop"] = (torch.optim.RMSprop, dict(lr=1e-2))
    try:
        rec_e, rec_f, _, _ = run_both("twice", opt_name, steps=4, s=2)
    finally:
        del OPTIMIZERS["SGD"], OPTIMIZERS["RMSprop"]
    assert_same(rec_e, rec_f)


def test_lr_scheduler_between_steps_is_honoured():
    """c = lr·s uses the lr the next step will use (read at the forward, as the eager path)."""

    def scheduler(opt):
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    rec_e, rec_f, _, _ = run_both("mlp", "SGDM", steps=5, s=3, scheduler=scheduler)
    assert_same(rec_e, rec_f)


def test_param_groups_get_their_own_lr():
    eager, fx = pair("twice")

    def groups(m):
        return [
            {"params": list(m.inp.parameters()) + list(m.out.parameters()), "lr": 0.2},
            {"params": m.block.parameters(), "lr": 0.01},
        ]

    opt_e = torch.optim.SGD(groups(eager), momentum=0.9)
    opt_f = torch.optim.SGD(groups(fx), momentum=0.9)
    xfx.predictive(fx, opt_f, s=2)
    assert "xgrad_c1" in fx.forward.graph_module.code
    data = batches("twice", 4)
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_frozen_and_unoptimized_parameters_are_read_as_they_are():
    eager, fx = pair("twice")
    for m in (eager, fx):
        m.inp.weight.requires_grad_(False)
    opt_e = torch.optim.Adam([p for p in eager.parameters() if p.requires_grad], lr=1e-2)
    opt_f = torch.optim.Adam([p for p in fx.parameters() if p.requires_grad], lr=1e-2)
    xfx.predictive(fx, opt_f, s=2)
    code = fx.forward.graph_module.code
    assert "inp_weight_predicted" not in code and "inp_bias_predicted" in code
    data = batches("twice", 4)
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(fx, opt_f, data))


def test_graph_module_input_is_accepted():
    eager, fx = pair("twice")
    gm = torch.fx.symbolic_trace(fx)  # default tracer: Linear layers are opaque leaves
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(gm.parameters(), lr=1e-2)
    assert xfx.predictive(gm, opt_f, s=2) is gm
    data = batches("twice", 4)
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(gm, opt_f, data))


def test_group_without_lr_uses_the_rules_own_step_size():
    """transformers' Adafactor keeps lr=None: c = s, the rule's Δθ carries the step size."""
    transformers_optimization = pytest.importorskip("transformers.optimization")
    _, fx = pair("twice")
    plain, _ = pair("twice")
    opt = transformers_optimization.Adafactor(fx.parameters(), lr=None, warmup_init=False)
    xfx.predictive(fx, opt, s=2)
    x, y = batches("twice", 1)[0]
    torch.nn.functional.cross_entropy(fx(x), y).backward()
    opt.step()
    with torch.no_grad():
        for p, q in zip(fx.parameters(), plain.parameters(), strict=True):
            q.copy_(p)
        for p, delta, lr in xgrad.directions(opt):
            dict(zip(fx.parameters(), plain.parameters(), strict=True))[p].sub_(2 * lr * delta)
    torch.testing.assert_close(fx(x), plain(x), rtol=1e-5, atol=1e-6)
