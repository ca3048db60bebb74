"""The fused fast path (XGRAD_IMPL=fused): the runtime's reference tests again, fallbacks, kernels.

The reference tests of test_runtime_rules/_training/_coverage/_api are imported below, so pytest
runs them a second time here, under `XGRAD_IMPL=fused` (their own modules run the default path,
foreach on CPU). The kernel runs uncompiled here (`fused.compile_fn` is the identity), which checks
the capture and the replayed program; real compilations are the `inductor` and CUDA tests.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_runtime_api import (
    test_failing_rule_leaves_nothing_predicted,
    test_frozen_and_stateless_params_untouched,
    test_predict_is_idempotent_while_predicted,
    test_predict_moves_restore_is_bit_exact_and_drops_stash,
    test_predict_never_reads_grad,
    test_predict_writes_in_place_never_rebinds,
    test_restore_is_bit_exact_property,
    test_state_dict_identical_mid_prediction,
    test_tensor_lr_and_scheduler,
)
from test_runtime_coverage import (
    test_keep_decay_keeps_decoupled_decay as test_coverage_keep_decay,
)
from test_runtime_coverage import (
    test_rule_matches_reference_bf16 as test_coverage_reference_bf16,
)
from test_runtime_coverage import (
    test_rule_matches_reference_fp32 as test_coverage_reference_fp32,
)
from test_runtime_coverage import (
    test_runtime_equals_algorithm_1 as test_coverage_algorithm_1,
)
from test_runtime_rules import (
    test_adamw_default_drops_decay,
    test_keep_decay_keeps_decoupled_decay_exactly,
    test_rule_matches_reference_fp32,
    test_rule_matches_reference_half,
)
from test_runtime_training import test_runtime_equals_algorithm_1

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.optim import AdaBelief, AdaM3
from xgrad_rewrite.runtime import fused
from xgrad_rewrite.runtime.registry import register_builtin
from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule

REUSED = [  # keeps the imports used; pytest collects each of them in this module too
    test_failing_rule_leaves_nothing_predicted,
    test_frozen_and_stateless_params_untouched,
    test_predict_is_idempotent_while_predicted,
    test_predict_moves_restore_is_bit_exact_and_drops_stash,
    test_predict_never_reads_grad,
    test_predict_writes_in_place_never_rebinds,
    test_restore_is_bit_exact_property,
    test_state_dict_identical_mid_prediction,
    test_tensor_lr_and_scheduler,
    test_coverage_keep_decay,
    test_coverage_reference_bf16,
    test_coverage_reference_fp32,
    test_coverage_algorithm_1,
    test_adamw_default_drops_decay,
    test_keep_decay_keeps_decoupled_decay_exactly,
    test_rule_matches_reference_fp32,
    test_rule_matches_reference_half,
    test_runtime_equals_algorithm_1,
]

optim = torch.optim


@pytest.fixture(autouse=True)
def fused_impl(monkeypatch):
    """Every test here predicts with the fused path, with fresh kernels and counters."""
    monkeypatch.setenv("XGRAD_IMPL", "fused")
    monkeypatch.setattr(fused, "compile_fn", lambda fn: fn)
    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setattr(fused, "COUNTS", {"fused": 0, "foreach": 0})
    yield
    register_builtin()


def stepped(cls, steps=3, dtype=torch.float32, shapes=((4, 3), (5,), (2, 2, 3)), **kwargs):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]
    opt = cls(params, **kwargs)
    xg.predict(opt, 1)  # hook on: g_t is cached for the rules that need it
    xg.restore(opt)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        opt.step()
    return opt, params


def predicted_by(impl, opt, params, monkeypatch, s=2.0):
    monkeypatch.setenv("XGRAD_IMPL", impl)
    theta = [p.detach().clone() for p in params]
    xg.predict(opt, s)
    out = [p.detach().clone() for p in params]
    xg.restore(opt)
    assert all(torch.equal(p, t) for p, t in zip(params, theta, strict=True))
    return out


TABLE_I = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, maximize=True)),
    (optim.RMSprop, dict(lr=0.01)),
    (optim.RMSprop, dict(lr=0.01, centered=True, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=0.01, momentum=0.9)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (AdaBelief, dict(lr=0.01)),
    (AdaM3, dict(lr=0.01)),
    (optim.NAdam, dict(lr=0.01)),
    (optim.Adagrad, dict(lr=0.01, lr_decay=0.01)),
    (optim.Adamax, dict(lr=0.01)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("cls", "kwargs"), TABLE_I, ids=lambda x: getattr(x, "__name__", ""))
def test_every_table_i_rule_runs_fused_and_equals_foreach(cls, kwargs, dtype, monkeypatch):
    opt, params = stepped(cls, dtype=dtype, **kwargs)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 0}  # foreach: the engine, uncounted
    got = predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 1, "foreach": 0}  # the kernel ran, no fallback
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for a, b, t in zip(got, expected, params, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        assert not torch.equal(a, t)


def test_keep_decay_program_has_the_decay_slot(monkeypatch):
    xg.register(optim.AdamW, xg.adamw_rule(keep_decay=True))
    opt, params = stepped(optim.AdamW, lr=0.1, weight_decay=0.5)
    expected = predicted_by("foreach", opt, params, monkeypatch, s=3)
    got = predicted_by("fused", opt, params, monkeypatch, s=3)
    assert fused.COUNTS["fused"] == 1
    (info,) = fused.kernels()
    assert info.fn.__kwdefaults__["decay"]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_same_program_and_shapes_share_one_kernel_across_steps_and_optimizers(monkeypatch):
    opt, params = stepped(optim.Adam, lr=0.01)
    twin, twin_params = stepped(AdaBelief, lr=0.02)  # the same ops as Adam (m / (√v + ε'))
    for _ in range(3):
        predicted_by("fused", opt, params, monkeypatch)
        predicted_by("fused", twin, twin_params, monkeypatch)
        for p in params + twin_params:
            p.grad = torch.randn_like(p)
        opt.step()
        twin.step()
    assert len(fused.kernels()) == 1 and fused.COUNTS == {"fused": 6, "foreach": 0}


def test_no_recompile_when_step_lr_and_s_change(monkeypatch):
    """Scalars are data (one table tensor), so the compiled graph is reused every step.

    aot_eager functionalizes the in-place writes (stash, θ) as inductor does, without codegen.
    """
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(
        fused, "compile_fn", lambda fn: torch.compile(fn, backend=counter, fullgraph=True)
    )
    torch._dynamo.reset()
    opt, params = stepped(optim.Adam, lr=0.01)
    for k in range(4):
        opt.param_groups[0]["lr"] = 0.01 / (k + 1)
        got = predicted_by("fused", opt, params, monkeypatch, s=1 + k)
        expected = predicted_by("foreach", opt, params, monkeypatch, s=1 + k)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    assert counter.frame_count == 1


# --- fallbacks: the foreach engine, with the same result ---------------------------------------


def test_unavailable_compiler_falls_back(monkeypatch):
    monkeypatch.setattr(fused, "available", lambda device_type: False)
    opt, params = stepped(optim.Adam, lr=0.01)
    got = predicted_by("fused", opt, params, monkeypatch)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1} and not fused.kernels()
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_compile_error_warns_once_changes_nothing_and_falls_back(monkeypatch):
    def broken(fn):
        def run(*args):
            raise RuntimeError("no C++ compiler\nlong trace")

        return run

    monkeypatch.setattr(fused, "compile_fn", broken)
    opt, params = stepped(optim.Adam, lr=0.01)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        got = predicted_by("fused", opt, params, monkeypatch)
    got_again = predicted_by("fused", opt, params, monkeypatch)  # broken kernel: not retried
    assert fused.COUNTS == {"fused": 0, "foreach": 2}
    assert fused.kernels()[0].broken == "RuntimeError: no C++ compiler"
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(got_again, expected, strict=True))


def test_unusual_dtype_and_tensor_subclass_fall_back(monkeypatch):
    opt, params = stepped(optim.SGD, lr=0.1, momentum=0.9, dtype=torch.complex64)
    predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1}

    class Tagged(torch.Tensor):
        pass

    p = torch.randn(3).as_subclass(Tagged).requires_grad_()
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.randn(3)
    opt.step()
    predicted_by("fused", opt, [p], monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 2}


def test_state_on_another_device_is_refused_by_the_capture(monkeypatch):
    opt, params = stepped(optim.SGD, lr=0.1, momentum=0.9)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    buf = opt.state[params[1]]["momentum_buffer"]
    opt.state[params[1]]["momentum_buffer"] = buf.to("meta")  # e.g. offloaded elsewhere
    states = [opt.state[p] for p in params]
    batch = Batch(params=params, states=states, group=opt.param_groups[0], theta=params)
    with pytest.raises(fused._Unfusable, match="offloaded"):
        fused.capture(xg.registry.rule_for(opt), batch)
    opt.state[params[1]]["momentum_buffer"] = buf
    got = predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 1, "foreach": 0}
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_rule_outside_the_captured_ops_falls_back(monkeypatch):
    def delta(batch):  # indexes into a list and calls a non-foreach op: not modelled
        num = torch._foreach_mul([st["momentum_buffer"] for st in batch.states], 2.0)
        num[0].clamp_(-1, 1)
        return Delta(num=num)

    xg.register(optim.SGD, Rule(delta=delta, name="clamped"))
    opt, params = stepped(optim.SGD, lr=0.1, momentum=0.9)
    got = predicted_by("fused", opt, params, monkeypatch)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1}
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_rule_writing_state_is_refused_by_the_capture():
    def delta(batch):
        bufs = [st["momentum_buffer"] for st in batch.states]
        torch._foreach_mul_(bufs, 2.0)  # would corrupt the optimizer: never fused
        return Delta(num=bufs)

    opt, params = stepped(optim.SGD, lr=0.1, momentum=0.9)
    states = [opt.state[p] for p in params]
    batch = Batch(params=params, states=states, group=opt.param_groups[0], theta=params)
    with pytest.raises(fused._Unfusable, match="writes into an input"):
        fused.capture(Rule(delta=delta), batch)


def test_kernel_cap_falls_back(monkeypatch):
    monkeypatch.setattr(fused, "MAX_KERNELS", 0)
    opt, params = stepped(optim.Adam, lr=0.01)
    predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1} and not fused.kernels()


def test_radam_falls_back_while_unrectified_then_fuses(monkeypatch):
    opt, params = stepped(optim.RAdam, steps=2, lr=0.01)  # ρ_t ≤ 5: the rule edits den[i]
    predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1}
    opt, params = stepped(optim.RAdam, steps=8, lr=0.01)
    expected = predicted_by("foreach", opt, params, monkeypatch)
    got = predicted_by("fused", opt, params, monkeypatch)
    assert fused.COUNTS["fused"] == 1
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# --- the switch --------------------------------------------------------------------------------


def test_impl_switch(monkeypatch):
    opt, params = stepped(optim.Adam, lr=0.01)
    for value, counts in [
        ("foreach", {"fused": 0, "foreach": 0}),  # foreach: the engine's own apply, uncounted
        ("auto", {"fused": 0, "foreach": 1}),  # CPU and a tiny model: foreach
        (" FUSED ", {"fused": 1, "foreach": 1}),
    ]:
        predicted_by(value, opt, params, monkeypatch)
        assert fused.COUNTS == counts, value
    monkeypatch.setenv("XGRAD_IMPL", "triton")
    with pytest.raises(ValueError, match="XGRAD_IMPL must be one of"):
        xg.predict(opt, 1)
    assert not xg.is_predicted(opt)


def test_auto_uses_fused_on_a_listed_device_above_the_size_floor(monkeypatch):
    monkeypatch.setattr(fused, "AUTO_DEVICES", frozenset({"cpu"}))
    opt, params = stepped(optim.Adam, lr=0.01)
    predicted_by("auto", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 0, "foreach": 1}  # 29 elements < AUTO_MIN_NUMEL
    monkeypatch.setattr(fused, "AUTO_MIN_NUMEL", 10)
    predicted_by("auto", opt, params, monkeypatch)
    assert fused.COUNTS == {"fused": 1, "foreach": 1}


# --- real compilations --------------------------------------------------------------------------


def _compiled_matches_foreach(device, monkeypatch, dtype=torch.float32):
    monkeypatch.setattr(fused, "compile_fn", fused.torch_compile)
    opt, params = stepped(optim.Adam, lr=0.01, dtype=dtype)
    if device != "cpu":
        params = [p.detach().to(device).requires_grad_() for p in params]
        state = opt.state_dict()
        opt = optim.Adam(params, lr=0.01)
        opt.load_state_dict(state)
    for _ in range(2):  # the second call reuses the kernel with new scalars
        expected = predicted_by("foreach", opt, params, monkeypatch)
        got = predicted_by("fused", opt, params, monkeypatch)
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    (info,) = fused.kernels()
    assert fused.COUNTS["fused"] == 2 and info.first_call_s > 0 and not info.broken


@pytest.mark.skipif(
    not fused.available("cpu") or os.environ.get("XGRAD_TEST_INDUCTOR") != "1",
    reason="inductor's C++ build takes ~60 s on a busy 2-core CPU; set XGRAD_TEST_INDUCTOR=1",
)
def test_inductor_cpu_kernel_matches_foreach(monkeypatch):
    _compiled_matches_foreach("cpu", monkeypatch)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cuda_kernel_matches_foreach(monkeypatch, dtype):
    _compiled_matches_foreach("cuda", monkeypatch, dtype)
