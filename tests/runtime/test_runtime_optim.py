"""AdaBelief and AdaM3: foreach == single-tensor == the plain-tensor reference (eqs. 21, 25)."""

from __future__ import annotations

import copy

import pytest
import support.reference_xgrad as ref
import torch

from xgrad_rewrite.optim import AdaBelief, AdaM3

OPTIONS = [
    {},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "decoupled_weight_decay": True},
    {"maximize": True, "betas": (0.8, 0.99)},
]


def params(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen).to(dtype) for shape in [(4, 3), (5,), (2, 2, 2)]]


@pytest.mark.parametrize("options", OPTIONS, ids=["plain", "l2", "decoupled", "maximize"])
@pytest.mark.parametrize("cls", [AdaBelief, AdaM3])
def test_foreach_single_and_reference_agree(cls, options):
    base = params()
    groups = [
        {"lr": 0.01, **options},
        {"lr": 0.003, "eps": 1e-6},
    ]
    runs = {}
    for foreach in (False, True):
        ps = [p.clone().requires_grad_() for p in base]
        opt = cls(
            [dict(params=ps[:2], foreach=foreach, **groups[0]), dict(params=ps[2:], **groups[1])]
        )
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.step()
        runs[foreach] = (ps, opt)
    ref_ps = [p.double() for p in base]
    states = [{} for _ in ref_ps]
    gen = torch.Generator().manual_seed(1)
    defaults = dict(betas=(0.9, 0.999), weight_decay=0.0, maximize=False)
    defaults.update(decoupled_weight_decay=False, eps=runs[True][1].defaults["eps"])
    for _ in range(5):
        for i, p in enumerate(ref_ps):
            grad = torch.randn(p.shape, generator=gen)
            group = {**defaults, **(groups[0] if i < 2 else groups[1])}
            ref.moment_step(cls.__name__, p, grad, states[i], group)
    for a, b, r in zip(runs[False][0], runs[True][0], ref_ps, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=1e-6)
    opt = runs[True][1]
    key = "exp_avg_var" if cls is AdaBelief else "exp_avg_sq"
    for p, st in zip(runs[True][0], states, strict=True):
        assert set(opt.state[p]) == {"step", "exp_avg", key}
        assert float(opt.state[p]["step"]) == 5
        torch.testing.assert_close(opt.state[p][key].double(), st["v"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [AdaBelief, AdaM3])
def test_state_dict_round_trip_and_bf16(cls):
    ps = [p.requires_grad_() for p in params(torch.bfloat16)]
    opt = cls(ps, lr=0.01, foreach=True)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    twin_ps = [p.detach().clone().requires_grad_() for p in ps]
    twin = cls(twin_ps, lr=0.01, foreach=True)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for a, b in zip(ps, twin_ps, strict=True):
        a.grad = torch.ones_like(a)
        b.grad = torch.ones_like(b)
    opt.step()
    twin.step()
    assert all(torch.equal(a, b) for a, b in zip(ps, twin_ps, strict=True))
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p).all() for p in ps)


def test_invalid_hyperparameters():
    p = [torch.zeros(1, requires_grad=True)]
    for bad in ({"lr": -1}, {"eps": -1}, {"betas": (1.0, 0.9)}, {"weight_decay": -1}):
        with pytest.raises(ValueError):
            AdaBelief(p, **bad)


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [AdaBelief, AdaM3])
def test_cuda_foreach_matches_cpu(cls):
    cpu = [p.requires_grad_() for p in params()]
    gpu = [p.detach().cuda().requires_grad_() for p in cpu]
    opt_c, opt_g = cls(cpu, lr=0.01), cls(gpu, lr=0.01)
    for _ in range(3):
        for a, b in zip(cpu, gpu, strict=True):
            a.grad = torch.ones_like(a)
            b.grad = torch.ones_like(b)
        opt_c.step()
        opt_g.step()
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(a.detach(), b.detach().cpu())
