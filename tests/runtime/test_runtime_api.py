"""The runtime contract: predict/restore/predicted, hooks, state_dict, wrappers, errors, env."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import support.reference_xgrad as ref
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.runtime import api
from xgrad_rewrite.runtime.registry import register_builtin

optim = torch.optim


def stepped(cls=optim.Adam, steps=2, n=3, **kwargs):
    """An optimizer over n small params that has taken `steps` steps with random gradients."""
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, generator=gen).requires_grad_() for _ in range(n)]
    opt = cls(params, **kwargs)
    xg.predict(opt, 1)  # installs the hook, so rules that need g_t have it
    xg.restore(opt)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return opt, params


def snapshot(params):
    return [p.detach().clone() for p in params]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_predict_moves_restore_is_bit_exact_and_drops_stash():
    opt, params = stepped()
    theta = snapshot(params)
    xg.predict(opt, 2)
    assert xg.is_predicted(opt)
    assert not any(torch.equal(p, t) for p, t in zip(params, theta, strict=True))
    xg.restore(opt)
    assert same(params, theta)
    assert not xg.is_predicted(opt)
    assert api._RECORDS[opt].stash is None
    xg.restore(opt)  # no-op
    assert same(params, theta)


def test_predict_is_idempotent_while_predicted():
    opt, params = stepped()
    xg.predict(opt, 2)
    once = snapshot(params)
    xg.predict(opt, 2)
    xg.predict(opt, 3)
    assert same(params, once)


def test_predict_writes_in_place_never_rebinds():
    opt, params = stepped()
    ptrs = [p.data_ptr() for p in params]
    with xg.predicted(opt):
        assert [p.data_ptr() for p in params] == ptrs
    assert [p.data_ptr() for p in params] == ptrs


def test_before_first_step_nothing_moves():
    params = [torch.randn(3, requires_grad=True)]
    opt = optim.Adam(params)
    theta = snapshot(params)
    xg.predict(opt, 3)
    assert same(params, theta)
    xg.restore(opt)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(optim.Adam, {}), (optim.SGD, {"lr": 0.1}), (optim.RMSprop, {}), (optim.Adagrad, {})],
)
def test_predict_never_reads_grad(cls, kwargs):
    """Stale or absent gradients at predict time (zero_grad before forward) change nothing."""
    opt, params = stepped(cls, **kwargs)
    with xg.predicted(opt, 2):
        expected = snapshot(params)
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    with xg.predicted(opt, 2):
        assert same(params, expected)
    opt.zero_grad(set_to_none=True)
    with xg.predicted(opt, 2):
        assert same(params, expected)


def test_step_pre_hook_restores_before_step():
    """A step taken while predicted starts from θt, exactly as restore-then-step does."""
    opt_a, params_a = stepped(optim.SGD, lr=0.1, momentum=0.9)
    opt_b, params_b = copy.deepcopy((opt_a, params_a))
    opt_b.param_groups[0]["params"] = params_b  # deepcopy of the pair keeps them tied
    grads = [torch.randn(4, 3) for _ in params_a]
    xg.predict(opt_a, 2)
    xg.predict(opt_b, 2)
    for pa, pb, g in zip(params_a, params_b, grads, strict=True):
        pa.grad, pb.grad = g.clone(), g.clone()
    xg.restore(opt_a)
    opt_a.step()
    opt_b.step()  # no restore: the hook does it
    assert not xg.is_predicted(opt_b)
    assert same(params_a, params_b)


def _state_dict_equal(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        sa, sb = a["state"][k], b["state"][k]
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[key], sb[key]) for key in sa)


@pytest.mark.parametrize("cls", [optim.Adam, optim.RMSprop, optim.SGD])
def test_state_dict_identical_mid_prediction(cls):
    opt, _ = stepped(cls, lr=0.01)
    plain_opt, _ = stepped(cls, lr=0.01)
    before = copy.deepcopy(opt.state_dict())
    with xg.predicted(opt, 2):
        _state_dict_equal(opt.state_dict(), before)
    _state_dict_equal(opt.state_dict(), before)
    _state_dict_equal(plain_opt.state_dict(), before)


def test_frozen_and_stateless_params_untouched():
    live = torch.randn(3, requires_grad=True)
    frozen = torch.randn(3, requires_grad=False)
    late = torch.randn(3, requires_grad=True)
    opt = optim.Adam([live, frozen, late], lr=0.1)
    live.grad = torch.ones(3)
    opt.step()
    theta = snapshot([live, frozen, late])
    with xg.predicted(opt, 3):
        assert not torch.equal(live, theta[0])
        assert torch.equal(frozen, theta[1]) and torch.equal(late, theta[2])


class Wrapper:
    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self):
        self.optimizer.step()


def test_wrappers_are_unwrapped():
    opt, params = stepped()
    wrapped = Wrapper(Wrapper(opt))
    theta = snapshot(params)
    xg.predict(wrapped, 1)
    assert xg.is_predicted(opt) and xg.is_predicted(wrapped)
    xg.restore(wrapped)
    assert same(params, theta)
    assert len(xg.directions(wrapped)) == len(params)


def test_lbfgs_refused_with_type_error():
    opt = optim.LBFGS([torch.zeros(2, requires_grad=True)])
    with pytest.raises(TypeError, match=r"LBFGS.*register\(LBFGS"):
        xg.predict(opt)


class MyOptimizer(optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["last"] = p.grad.clone()
                p.sub_(group["lr"] * p.grad)


def test_unknown_optimizer_refused_then_registered():
    p = torch.ones(3, requires_grad=True)
    opt = MyOptimizer([p])
    with pytest.raises(TypeError, match=r"MyOptimizer.*register\(MyOptimizer, rule\)"):
        xg.predict(opt)
    with pytest.raises(TypeError, match="not a torch.optim.Optimizer"):
        xg.predict(object())
    xg.register(MyOptimizer, lambda batch: xg.rules.Delta(num=[s["last"] for s in batch.states]))
    try:
        p.grad = torch.full((3,), 2.0)
        with torch.no_grad():
            opt.step()
        with xg.predicted(opt, 2):
            torch.testing.assert_close(p.detach(), torch.full((3,), 0.8 - 0.1 * 2 * 2.0))
    finally:
        del __import__("xgrad_rewrite.runtime.registry").runtime.registry._RULES[MyOptimizer]


def test_subclass_inherits_rule_along_mro():
    class MyAdam(optim.Adam):
        pass

    opt, params = stepped(MyAdam)
    ref_opt, ref_params = stepped(optim.Adam)
    with xg.predicted(opt, 2), xg.predicted(ref_opt, 2):
        assert same(params, ref_params)


def test_predicted_context_restores_on_error():
    opt, params = stepped()
    theta = snapshot(params)
    with pytest.raises(RuntimeError, match="boom"), xg.predicted(opt, 2):
        raise RuntimeError("boom")
    assert same(params, theta)
    assert not xg.is_predicted(opt)


def test_env_overrides(monkeypatch):
    opt, params = stepped()
    with xg.predicted(opt, 3):
        s3 = snapshot(params)
    monkeypatch.setenv("XGRAD_S", "3")
    with xg.predicted(opt, 1):
        assert same(params, s3)
    monkeypatch.setenv("XGRAD_DISABLE", "1")
    theta = snapshot(params)
    xg.predict(opt, 2)
    assert same(params, theta) and not xg.is_predicted(opt)
    monkeypatch.setenv("XGRAD_DISABLE", "0")
    monkeypatch.setenv("XGRAD_S", "two")
    with pytest.raises(ValueError, match="XGRAD_S"):
        xg.predict(opt)


def test_s_zero_is_off_and_negative_refused():
    opt, params = stepped()
    theta = snapshot(params)
    xg.predict(opt, 0)
    assert same(params, theta) and not xg.is_predicted(opt)
    with pytest.raises(ValueError, match="s must be"):
        xg.predict(opt, -1)


@pytest.mark.parametrize("env", [{"XGRAD_DISABLE": "1"}, {"XGRAD_S": "0"}, {}])
def test_gradient_cache_only_while_prediction_is_on(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    params = [torch.randn(3, requires_grad=True)]
    opt = optim.RMSprop(params)
    for _ in range(2):
        xg.predict(opt, 1)
        params[0].grad = torch.ones(3)
        xg.restore(opt)
        opt.step()
    assert bool(api._RECORDS[opt].grads) == (not env)


def test_tensor_lr_and_scheduler():
    opt_t, params_t = stepped(optim.Adam, lr=torch.tensor(0.01))
    opt_f, params_f = stepped(optim.Adam, lr=0.01)
    with xg.predicted(opt_t, 2), xg.predicted(opt_f, 2):
        torch.testing.assert_close(params_t, params_f)
    assert xg.directions(opt_t)[0][2] is opt_t.param_groups[0]["lr"]
    scheduler = optim.lr_scheduler.StepLR(opt_f, step_size=1, gamma=0.1)
    for p in params_f:
        p.grad = torch.ones_like(p)
    opt_f.step()
    scheduler.step()
    assert opt_f.param_groups[0]["lr"] == pytest.approx(0.001)
    theta = snapshot(params_f)
    with xg.predicted(opt_f, 2):
        for p, t in zip(params_f, theta, strict=True):
            d = ref.delta("Adam", opt_f.state[p], opt_f.param_groups[0], t)
            torch.testing.assert_close(p.detach().double(), ref.predicted(t, d, 0.001, 2))


def test_record_dies_with_optimizer():
    opt, _ = stepped()
    xg.predict(opt)
    assert opt in api._RECORDS
    alive = weakref.ref(opt)
    del opt
    gc.collect()
    assert alive() is None


def test_register_builtin_restores_defaults():
    xg.register(optim.Adam, xg.adam_rule(keep_decay=True))
    register_builtin()
    from xgrad_rewrite.runtime.registry import rule_for

    assert rule_for(optim.Adam([torch.zeros(1, requires_grad=True)])).name == "Adam"


floats = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(floats, min_size=1, max_size=16),
    grads=st.lists(st.floats(-1e3, 1e3, width=32), min_size=1, max_size=16),
    s=st.floats(0, 8),
    lr=st.floats(1e-6, 10),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    cls=st.sampled_from([optim.SGD, optim.Adam, optim.RMSprop, optim.AdamW]),
)
def test_restore_is_bit_exact_property(values, grads, s, lr, dtype, cls):
    n = min(len(values), len(grads))
    p = torch.tensor(values[:n]).to(dtype).requires_grad_()
    kwargs = {"momentum": 0.9} if cls is optim.SGD else {}
    opt = cls([p], lr=lr, **kwargs)
    xg.predict(opt, s)
    p.grad = torch.tensor(grads[:n]).to(dtype)
    xg.restore(opt)
    opt.step()
    bits = p.detach().clone().view(torch.int16 if dtype != torch.float32 else torch.int32)
    xg.predict(opt, s)
    xg.predict(opt, s)
    xg.restore(opt)
    assert torch.equal(p.detach().view(bits.dtype), bits)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.Adam, {}),
        (optim.AdamW, {"fused": True}),
        (optim.SGD, {"momentum": 0.9}),
        (optim.RMSprop, {"momentum": 0.9}),
    ],
)
def test_cuda_matches_cpu(cls, kwargs):
    opt_c, params_c = stepped(cls, lr=0.01, **{k: v for k, v in kwargs.items() if k != "fused"})
    params_g = [p.detach().cuda().requires_grad_() for p in params_c]
    opt_g = cls(params_g, lr=0.01, **kwargs)
    opt_g.load_state_dict(opt_c.state_dict())
    theta = snapshot(params_g)
    with xg.predicted(opt_c, 2), xg.predicted(opt_g, 2):
        for a, b in zip(params_c, params_g, strict=True):
            torch.testing.assert_close(a.detach(), b.detach().cpu())
    assert same(params_g, theta)


def test_failing_rule_leaves_nothing_predicted():
    opt, params = stepped(optim.Adam, n=3)
    opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], "lr": 0.1})
    extra = opt.param_groups[1]["params"][0]
    extra.grad = torch.ones(2)
    opt.step()
    del opt.state[extra]["exp_avg"]  # the second group's rule raises KeyError
    theta = snapshot(params)
    with pytest.raises(KeyError):
        xg.predict(opt, 2)
    assert same(params, theta) and not xg.is_predicted(opt)


def test_none_is_no_optimizer_and_nothing_to_predict():
    """A script whose optimizer is optional (`optimizer = None` unless configured) runs patched:
    predict/restore of None do nothing instead of raising."""
    import xgrad_rewrite.runtime as xgrad

    xgrad.predict(None, s=2)
    xgrad.restore(None)
    with xgrad.predicted(None):
        pass
