"""20 steps of a small MLP: the runtime equals a from-scratch Algorithm 1 loop (to 1e-5)."""

from __future__ import annotations

import copy

import pytest
import support.reference_xgrad as ref
import torch

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.optim import AdaBelief, AdaM3

CASES = [
    ("SGD", torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    ("Adam", torch.optim.Adam, dict(lr=1e-2)),
    ("AdamW", torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
    ("RMSprop", torch.optim.RMSprop, dict(lr=1e-3)),
    ("AdaBelief", AdaBelief, dict(lr=1e-2)),
    ("AdaM3", AdaM3, dict(lr=1e-2)),
]


def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 16, 8, generator=gen)
    y = torch.randint(0, 4, (20, 16), generator=gen)
    return x, y


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def with_runtime(net, opt, s):
    for x, y in zip(*data(), strict=True):
        opt.zero_grad(set_to_none=True)
        xg.predict(opt, s=s)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        xg.restore(opt)
        opt.step()


def algorithm_1(name, net, opt, s):
    """Algorithm 1 by hand: store θt, load θ̂ (reference), forward, backward, restore, step."""
    last = {}
    for x, y in zip(*data(), strict=True):
        params = [p for g in opt.param_groups for p in g["params"]]
        theta = [p.detach().clone() for p in params]  # step 1
        theta_of = dict(zip(params, theta, strict=True))
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    t = theta_of[p]
                    if not opt.state.get(p) and p not in last:
                        continue  # no state yet: Δθ = 0
                    g_last = ref.last_gradient(*last[p], group) if p in last else None
                    d = ref.delta(name, opt.state[p], group, t, g_last)  # step 2
                    p.copy_(ref.predicted(t, d, group["lr"], s))  # step 3
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()  # steps 4-5
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)  # step 6
                last[p] = (p.grad.clone(), t)
        opt.step()  # step 7


@pytest.mark.parametrize(("name", "cls", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_runtime_equals_algorithm_1(name, cls, kwargs):
    net_a = model()
    net_b = copy.deepcopy(net_a)
    opt_a = cls(net_a.parameters(), **kwargs)
    opt_b = cls(net_b.parameters(), **kwargs)
    with_runtime(net_a, opt_a, s=2)
    algorithm_1(name, net_b, opt_b, s=2)
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and prediction really changed the trajectory
    net_c = copy.deepcopy(model())
    opt_c = cls(net_c.parameters(), **kwargs)
    with_runtime(net_c, opt_c, s=0)
    assert any(
        not torch.allclose(a, c)
        for a, c in zip(net_a.parameters(), net_c.parameters(), strict=True)
    )
