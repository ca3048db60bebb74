"""Every Table I rule and option against the plain-tensor reference in
tests/support/reference_xgrad.py."""

from __future__ import annotations

import pytest
import support.reference_xgrad as ref
import torch

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.optim import AdaBelief, AdaM3
from xgrad_rewrite.runtime.registry import register_builtin

optim = torch.optim

# (id, class, reference name, per-group options); every case has two groups with different lr.
CASES = [
    (
        "sgd-momentum",
        optim.SGD,
        "SGD",
        [dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)],
    ),
    (
        "sgd-nesterov",
        optim.SGD,
        "SGD",
        [
            dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(lr=0.02, momentum=0.5, nesterov=True),
        ],
    ),
    (
        "sgd-maximize",
        optim.SGD,
        "SGD",
        [
            dict(lr=0.1, momentum=0.9, maximize=True),
            dict(lr=0.03, momentum=0.9, weight_decay=0.1, maximize=True),
        ],
    ),
    ("sgd-plain", optim.SGD, "SGD", [dict(lr=0.1), dict(lr=0.05, weight_decay=0.1, maximize=True)]),
    (
        "rmsprop",
        optim.RMSprop,
        "RMSprop",
        [dict(lr=0.01), dict(lr=0.003, alpha=0.9, weight_decay=0.01)],
    ),
    (
        "rmsprop-centered",
        optim.RMSprop,
        "RMSprop",
        [dict(lr=0.01, centered=True), dict(lr=0.002, centered=True, maximize=True)],
    ),
    (
        "rmsprop-momentum",
        optim.RMSprop,
        "RMSprop",
        [
            dict(lr=0.01, momentum=0.9),
            dict(lr=0.002, centered=True, momentum=0.5, weight_decay=0.1),
        ],
    ),
    ("adam", optim.Adam, "Adam", [dict(lr=0.01), dict(lr=0.002, betas=(0.8, 0.99), eps=1e-6)]),
    (
        "adam-amsgrad",
        optim.Adam,
        "Adam",
        [dict(lr=0.01, amsgrad=True), dict(lr=0.003, amsgrad=True, weight_decay=0.1)],
    ),
    (
        "adam-maximize-l2",
        optim.Adam,
        "Adam",
        [dict(lr=0.01, maximize=True, weight_decay=0.1), dict(lr=0.003)],
    ),
    (
        "adam-decoupled",
        optim.Adam,
        "Adam",
        [dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True), dict(lr=0.003)],
    ),
    (
        "adamw",
        optim.AdamW,
        "AdamW",
        [dict(lr=0.01, weight_decay=0.1), dict(lr=0.003, amsgrad=True, weight_decay=0.5)],
    ),
    (
        "adamw-foreach",
        optim.AdamW,
        "AdamW",
        [dict(lr=0.01, weight_decay=0.1, foreach=True), dict(lr=0.003, foreach=True)],
    ),
    (
        "adamax",
        optim.Adamax,
        "Adamax",
        [dict(lr=0.01), dict(lr=0.003, weight_decay=0.1, maximize=True)],
    ),
    (
        "nadam",
        optim.NAdam,
        "NAdam",
        [dict(lr=0.01), dict(lr=0.003, weight_decay=0.1, momentum_decay=0.01)],
    ),
    (
        "nadam-decoupled",
        optim.NAdam,
        "NAdam",
        [
            dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
            dict(lr=0.003, maximize=True),
        ],
    ),
    (
        "radam",
        optim.RAdam,
        "RAdam",
        [dict(lr=0.01, betas=(0.9, 0.9)), dict(lr=0.003, weight_decay=0.1)],
    ),
    (
        "radam-decoupled",
        optim.RAdam,
        "RAdam",
        [
            dict(lr=0.01, betas=(0.9, 0.8), weight_decay=0.1, decoupled_weight_decay=True),
            dict(lr=0.003),
        ],
    ),
    (
        "adagrad",
        optim.Adagrad,
        "Adagrad",
        [
            dict(lr=0.1),
            dict(lr=0.03, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
        ],
    ),
    (
        "adabelief",
        AdaBelief,
        "AdaBelief",
        [dict(lr=0.01), dict(lr=0.003, weight_decay=0.1, eps=1e-8)],
    ),
    (
        "adabelief-decoupled",
        AdaBelief,
        "AdaBelief",
        [
            dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, foreach=True),
            dict(lr=0.003, maximize=True, foreach=True),
        ],
    ),
    ("adam3", AdaM3, "AdaM3", [dict(lr=0.01), dict(lr=0.003, weight_decay=0.1)]),
    (
        "adam3-decoupled",
        AdaM3,
        "AdaM3",
        [
            dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, foreach=True),
            dict(lr=0.003, maximize=True, foreach=True),
        ],
    ),
]

TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def make_params(dtype: torch.dtype, n_groups: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), (2, 2)]
    return [
        [torch.randn(shape, generator=gen).to(dtype).requires_grad_() for shape in shapes]
        for _ in range(n_groups)
    ]


def run_case(cls, name, groups, steps, s, dtype, keep_decay=False):
    """Take `steps` steps (predict/restore around each), then compare θ̂ with the reference."""
    params = make_params(dtype, len(groups))
    frozen = params[0][2]  # never gets a gradient: no state, must stay untouched
    opt = cls([dict(params=ps, **kw) for ps, kw in zip(params, groups, strict=True)])
    gen = torch.Generator().manual_seed(1)
    last = {}
    for _ in range(steps):
        before = [p.detach().clone() for ps in params for p in ps]
        xg.predict(opt, s)
        xg.restore(opt)
        assert all(
            torch.equal(a, p) for a, p in zip(before, [p for ps in params for p in ps], strict=True)
        )
        for group in opt.param_groups:
            for p in group["params"]:
                if p is frozen:
                    continue
                p.grad = torch.randn(p.shape, generator=gen).to(dtype)
                last[p] = (p.grad.clone(), p.detach().clone())
        opt.step()
    theta = {p: p.detach().clone() for ps in params for p in ps}
    xg.predict(opt, s)
    assert xg.is_predicted(opt)
    tol = TOLERANCE[dtype]
    for group in opt.param_groups:
        for p in group["params"]:
            if p is frozen:
                assert torch.equal(p, theta[p])
                continue
            g_last = ref.last_gradient(*last[p], group)
            d = ref.delta(name, opt.state[p], group, theta[p], g_last, keep_decay)
            expected = ref.predicted(theta[p], d, float(group["lr"]), s)
            torch.testing.assert_close(p.detach().double(), expected, rtol=tol, atol=tol)
            assert not torch.equal(p, theta[p])
    xg.restore(opt)
    assert all(torch.equal(p, theta[p]) for p in theta)


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize(("case", "cls", "name", "groups"), CASES, ids=[c[0] for c in CASES])
def test_rule_matches_reference_fp32(case, cls, name, groups, steps, s):
    run_case(cls, name, groups, steps, s, torch.float32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(("case", "cls", "name", "groups"), CASES, ids=[c[0] for c in CASES])
def test_rule_matches_reference_half(case, cls, name, groups, dtype):
    if cls is AdaM3 and dtype is torch.float16:  # ε=1e-8 is below fp16's resolution: 0/0
        groups = [dict(g, eps=1e-4) for g in groups]
    run_case(cls, name, groups, 2, 2, dtype)


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize(
    ("cls", "name", "rule_factory"),
    [
        (optim.AdamW, "AdamW", xg.adamw_rule),
        (AdaBelief, "AdaBelief", None),
        (AdaM3, "AdaM3", None),
    ],
)
def test_keep_decay_keeps_decoupled_decay_exactly(cls, name, rule_factory, steps):
    from xgrad_rewrite.runtime.rules import adabelief_rule, adam3_rule

    factory = rule_factory or {AdaBelief: adabelief_rule, AdaM3: adam3_rule}[cls]
    groups = [
        dict(lr=0.01, weight_decay=0.5, decoupled_weight_decay=True),
        dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True),
    ]
    if cls is optim.AdamW:
        groups = [{k: v for k, v in g.items() if k != "decoupled_weight_decay"} for g in groups]
    xg.register(cls, factory(keep_decay=True))
    try:
        run_case(cls, name, groups, steps, 2, torch.float32, keep_decay=True)
    finally:
        register_builtin()


def test_adamw_rule_keeps_the_decay_of_groups_without_the_decoupled_flag():
    """torch < 2.6: AdamW's groups have no `decoupled_weight_decay` key; its decay is decoupled
    all the same. Adam's own (L2) decay is inside the moments: nothing to keep."""
    from xgrad_rewrite.runtime.rules.base import Batch

    p = torch.ones(3)
    state = dict(step=torch.tensor(1.0), exp_avg=torch.ones(3), exp_avg_sq=torch.ones(3))
    group = dict(params=[p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5)
    batch = Batch(params=[p], states=[state], group=group, theta=[p])
    assert xg.adamw_rule(keep_decay=True).delta(batch).decay == 0.5
    assert xg.adamw_rule(keep_decay=True).decoupled_decay
    assert xg.adamw_rule().delta(batch).decay == 0.0  # eq. 20: dropped by default
    assert xg.adam_rule(keep_decay=True).delta(batch).decay == 0.0  # L2: in the moments
    flagged = dict(group, decoupled_weight_decay=True)  # torch >= 2.6, Adam(decoupled=True)
    assert xg.adam_rule(keep_decay=True).delta(Batch([p], [state], flagged, theta=[p])).decay == 0.5


def test_adamw_default_drops_decay():
    """Eq. 20: the default prediction ignores the decoupled decay (differs from keep_decay)."""
    p = torch.ones(4, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    xg.predict(opt)
    p.grad = torch.ones(4)
    xg.restore(opt)
    opt.step()
    theta = p.detach().clone()
    d = torch.ones(4) / (1 + 1e-8)  # m̂ = v̂ = 1 after one step with g = 1
    with xg.predicted(opt, s=1):
        torch.testing.assert_close(p.detach(), theta - 0.1 * d)


def test_directions_match_reference_and_mutate_nothing():
    params = make_params(torch.float32, 2)
    opt = optim.Adam([{"params": params[0], "lr": 0.1}, {"params": params[1], "lr": 0.01}])
    for p in [*params[0], *params[1]]:
        p.grad = torch.randn_like(p)
    opt.step()
    before = {(id(p), k): v.clone() for p in opt.state for k, v in opt.state[p].items()}
    theta = [p.detach().clone() for ps in params for p in ps]
    out = xg.directions(opt)
    assert len(out) == 6
    for p, d, lr in out:
        group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
        assert lr == group["lr"]
        torch.testing.assert_close(d.double(), ref.delta("Adam", opt.state[p], group, p))
        assert all(d is not t for t in opt.state[p].values())
    assert all(
        torch.equal(a, p) for a, p in zip(theta, [p for ps in params for p in ps], strict=True)
    )
    after = {(id(p), k): v for p in opt.state for k, v in opt.state[p].items()}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_directions_while_predicted_use_theta_t_for_the_decay_term():
    p = torch.ones(4, requires_grad=True)
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    xg.register(optim.AdamW, xg.adamw_rule(keep_decay=True))
    try:
        p.grad = torch.ones(4)
        opt.step()
        before = xg.directions(opt)[0][1]
        with xg.predicted(opt, 3):
            during = xg.directions(opt)[0][1]
        assert torch.equal(before, during)
        torch.testing.assert_close(before, 1 / (1 + 1e-8) + 0.5 * p.detach())
    finally:
        register_builtin()
