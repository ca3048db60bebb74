"""Rules for Adadelta, ASGD, Rprop, Adafactor, Muon and SparseAdam against the
independent reference in tests/support/reference_coverage.py; exactness claims; restore bit-exact;
the unknown-class error; the patched digits example trained with Adadelta."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import support.reference_coverage as ref
import torch

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.runtime.registry import register_builtin
from xgrad_rewrite.runtime.rules.rprop import rprop_rule

optim = torch.optim
ROOT = Path(__file__).resolve().parents[2]
VECTORS = [(3, 4), (5,), (2, 3, 4), (2, 2)]  # the last one never gets a gradient
MATRICES = [(3, 4), (6, 2), (4, 4), (2, 2)]

# (id, class, reference, per-group options, shapes, L2 decay in g, sparse gradients)
CASES = [
    (
        "adadelta",
        optim.Adadelta,
        ref.adadelta,
        [dict(lr=1.0), dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1, maximize=True)],
        VECTORS,
        True,
        False,
    ),
    (
        "asgd",
        optim.ASGD,
        ref.asgd,
        [
            dict(lr=0.01),
            dict(lr=0.05, lambd=1e-2, alpha=0.5, t0=2, weight_decay=0.1, maximize=True),
        ],
        VECTORS,
        True,
        False,
    ),
    (
        "rprop",
        optim.Rprop,
        ref.rprop,
        [dict(lr=0.01), dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.06), maximize=True)],
        VECTORS,
        False,
        False,
    ),
    (
        "adafactor",
        optim.Adafactor,
        ref.adafactor,
        [
            dict(lr=0.01),
            dict(
                lr=0.05, beta2_decay=-0.5, eps=(1e-3, 1e-3), d=0.5, weight_decay=0.1, maximize=True
            ),
        ],
        VECTORS,
        False,
        False,
    ),
    (
        "muon",
        optim.Muon,
        ref.muon,
        [
            dict(lr=0.02),
            dict(
                lr=0.05,
                momentum=0.9,
                nesterov=False,
                adjust_lr_fn="match_rms_adamw",
                weight_decay=0.2,
            ),
        ],
        MATRICES,
        False,
        False,
    ),
    (
        "sparse-adam",
        optim.SparseAdam,
        ref.sparse_adam,
        [dict(lr=0.01), dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, maximize=True)],
        [(6, 3), (5,), (4, 2), (2, 2)],
        False,
        True,
    ),
]
IDS = [c[0] for c in CASES]
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 3e-2}


def gradient(shape, gen, dtype, sparse):
    g = torch.randn(shape, generator=gen).to(dtype)
    if not sparse:
        return g
    keep = torch.rand(shape[0], generator=gen) < 0.6  # some rows untouched this step
    g[~keep] = 0
    return g.to_sparse(1) if len(shape) > 1 else g.to_sparse()


def run_case(
    cls, reference, groups, shapes, l2, sparse, steps, s, dtype, tol=None, *, lr_of=float, still=1
):
    """`steps` steps with predict/restore around each, then θ̂ against the reference.

    `cls(groups)` builds the optimizer; `lr_of(group["lr"])` is the lr the prediction uses;
    at most `still` trained parameters may keep θt (Rprop: every sign of one may just flip).
    """
    gen = torch.Generator().manual_seed(0)
    params = [
        [torch.randn(shape, generator=gen).to(dtype).requires_grad_() for shape in shapes]
        for _ in groups
    ]
    frozen = params[0][-1]  # never gets a gradient: no state, must stay untouched
    opt = cls([dict(params=ps, **kw) for ps, kw in zip(params, groups, strict=True)])
    every = [p for ps in params for p in ps]
    last = {}
    for _ in range(steps):
        before = [p.detach().clone() for p in every]
        xg.predict(opt, s)
        xg.restore(opt)
        assert all(torch.equal(a, p) for a, p in zip(before, every, strict=True))
        for p in every:
            if p is not frozen:
                p.grad = gradient(p.shape, gen, dtype, sparse)
                dense = p.grad.to_dense() if sparse else p.grad
                last[p] = (dense.clone(), p.detach().clone())
        opt.step()
    theta = {p: p.detach().clone() for p in every}
    xg.predict(opt, s)
    assert xg.is_predicted(opt)
    tol = tol or TOLERANCE[dtype]
    moved = 0
    for group in opt.param_groups:
        for p in group["params"]:
            if p is frozen:
                assert torch.equal(p, theta[p])
                continue
            g_last = ref.last_gradient(*last[p], group, l2)
            d = reference(opt.state[p], group, theta[p], g_last)
            expected = theta[p].double() - lr_of(group["lr"]) * s * d
            torch.testing.assert_close(p.detach().double(), expected, rtol=tol, atol=tol)
            moved += not torch.equal(p, theta[p])
    assert moved >= len(every) - 1 - still  # the frozen one never moves
    xg.restore(opt)
    assert all(torch.equal(p, theta[p]) for p in every)  # bit for bit


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize(
    ("case", "cls", "reference", "groups", "shapes", "l2", "sparse"), CASES, ids=IDS
)
def test_rule_matches_reference_fp32(case, cls, reference, groups, shapes, l2, sparse, steps):
    # Muon orthogonalises in bfloat16 (as torch does): the reference agrees to bf16 rounding.
    tol = 5e-3 if cls is optim.Muon else None
    run_case(cls, reference, groups, shapes, l2, sparse, steps, 2, torch.float32, tol)


@pytest.mark.parametrize(
    ("case", "cls", "reference", "groups", "shapes", "l2", "sparse"), CASES, ids=IDS
)
def test_rule_matches_reference_bf16(case, cls, reference, groups, shapes, l2, sparse):
    if cls is optim.SparseAdam:
        pytest.skip("torch's SparseAdam has no bfloat16 sparse kernels on CPU")
    run_case(cls, reference, groups, shapes, l2, sparse, 2, 3, torch.bfloat16)


@pytest.mark.parametrize("s", [1, 3])
def test_rprop_step_t_variant(s):
    xg.register(optim.Rprop, rprop_rule(next_step=False))
    try:
        case = CASES[IDS.index("rprop")]
        reference = lambda st, g, th, gl: ref.rprop(st, g, th, gl, next_step=False)  # noqa: E731
        run_case(case[1], reference, *case[3:], steps=3, s=s, dtype=torch.float32)
    finally:
        register_builtin()


@pytest.mark.parametrize("factory", ["adafactor", "muon"])
def test_keep_decay_keeps_decoupled_decay(factory):
    from xgrad_rewrite.runtime.rules.adafactor import adafactor_rule
    from xgrad_rewrite.runtime.rules.muon import muon_rule

    cls, rule, reference = {
        "adafactor": (optim.Adafactor, adafactor_rule, ref.adafactor),
        "muon": (optim.Muon, muon_rule, ref.muon),
    }[factory]
    groups = [dict(lr=0.02, weight_decay=0.5), dict(lr=0.05, weight_decay=0.1)]
    xg.register(cls, rule(keep_decay=True))
    try:
        run_case(
            cls,
            lambda st, g, th, gl: reference(st, g, th, gl, keep_decay=True),
            groups,
            MATRICES,
            False,
            False,
            3,
            2,
            torch.float32,
            5e-3 if cls is optim.Muon else None,
        )
    finally:
        register_builtin()


# --- exactness claims (README.md, "Supported optimizers") ---------------------------


def _two_steps(opt, p, grads):
    """Steps with predict/restore around each; returns θ before and after the last step."""
    for g in grads:
        xg.predict(opt, 1)
        p.grad = g.clone()
        xg.restore(opt)
        before = p.detach().clone()
        opt.step()
    return before, p.detach().clone()


def test_muon_predicts_exactly_the_update_step_t_applied():
    gen = torch.Generator().manual_seed(3)
    for nesterov in (True, False):
        p = torch.randn(8, 5, generator=gen).requires_grad_()
        opt = optim.Muon([p], lr=0.02, weight_decay=0.0, nesterov=nesterov)
        before, after = _two_steps(opt, p, [torch.randn(8, 5, generator=gen) for _ in range(3)])
        with xg.predicted(opt, s=1):
            torch.testing.assert_close(after - p.detach(), before - after, rtol=0, atol=1e-6)


def test_muon_newton_schulz_is_torchs():
    from xgrad_rewrite.runtime.rules.muon import newton_schulz

    torch_ns = pytest.importorskip("torch.optim._muon")._zeropower_via_newtonschulz
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    for m in (x, x.T.contiguous()):
        args = ((3.4445, -4.7750, 2.0315), 5, 1e-7)
        assert torch.equal(newton_schulz(m, *args), torch_ns(m, *args))


def test_rprop_and_asgd_predict_the_next_step_when_the_gradient_repeats():
    """Same gradient again: Rprop keeps its signs, ASGD sees g_{t+1} = g_t: θ̂(s=1) = θ_{t+1}."""
    gen = torch.Generator().manual_seed(4)
    g = torch.randn(6, 3, generator=gen)
    for cls, kw in ((optim.Rprop, dict(lr=0.01)), (optim.ASGD, dict(lr=0.05, lambd=0.01, t0=1))):
        p = torch.randn(6, 3, generator=gen).requires_grad_()
        opt = cls([p], **kw)
        _two_steps(opt, p, [g, g])
        xg.predict(opt, 1)
        predicted = p.detach().clone()
        p.grad = g.clone()
        opt.step()  # the pre-step hook restores θt first
        torch.testing.assert_close(predicted, p.detach(), rtol=0, atol=1e-6)


def test_sparse_adam_moves_touched_rows_by_step_ts_update_and_never_untouched_rows():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = optim.SparseAdam(emb.parameters(), lr=0.1)
    for idx in ([1, 2, 3], [2, 5]):
        xg.predict(opt, 1)
        emb(torch.tensor(idx)).sum().backward()
        xg.restore(opt)
        before = emb.weight.detach().clone()
        opt.step()
        opt.zero_grad()
    after = emb.weight.detach().clone()
    with xg.predicted(opt, s=1):
        w = emb.weight.detach()
        torch.testing.assert_close(after[[2, 5]] - w[[2, 5]], before[[2, 5]] - after[[2, 5]])
        assert torch.equal(w[[0, 4, 6, 7, 8, 9]], after[[0, 4, 6, 7, 8, 9]])  # never touched
        assert not torch.equal(w[[1, 3]], after[[1, 3]])  # touched earlier: stale moments


# --- Algorithm 1: 20 steps of an MLP ----------------------------------------------------------

TRAINING = [
    ("Adadelta", optim.Adadelta, dict(lr=1.0, weight_decay=1e-3), ref.adadelta, True),
    ("Rprop", optim.Rprop, dict(lr=1e-3), ref.rprop, False),
    ("ASGD", optim.ASGD, dict(lr=0.05, lambd=1e-3, t0=5), ref.asgd, True),
    ("Adafactor", optim.Adafactor, dict(lr=0.05, weight_decay=0.01), ref.adafactor, False),
    ("Muon", optim.Muon, dict(lr=0.02), None, False),
]


def _muon_with_torchs_ns(st, group, theta, g):
    """The Muon reference, with torch's own orthogonalisation (bf16 op order) for 1e-5."""
    torch_ns = pytest.importorskip("torch.optim._muon")._zeropower_via_newtonschulz
    mu = group["momentum"]
    buf = st["momentum_buffer"]
    u = g.to(buf.dtype).lerp(buf, mu) if group["nesterov"] else buf
    o = torch_ns(u, group["ns_coefficients"], group["ns_steps"], group["eps"]).double()
    rows, cols = theta.shape
    return max(1, rows / cols) ** 0.5 * o


def _batches():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(20, 16, 8, generator=gen), torch.randint(0, 4, (20, 16), generator=gen)


def _mlp(bias=True):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16, bias=bias), torch.nn.Tanh(), torch.nn.Linear(16, 4, bias=bias)
    )


@pytest.mark.parametrize(
    ("name", "cls", "kwargs", "reference", "l2"), TRAINING, ids=[t[0] for t in TRAINING]
)
def test_runtime_equals_algorithm_1(name, cls, kwargs, reference, l2):
    reference = reference or _muon_with_torchs_ns
    net_a = _mlp(bias=cls is not optim.Muon)  # torch's Muon takes 2D parameters only
    net_b = __import__("copy").deepcopy(net_a)
    opt_a, opt_b = cls(net_a.parameters(), **kwargs), cls(net_b.parameters(), **kwargs)
    loss = torch.nn.functional.cross_entropy
    for x, y in zip(*_batches(), strict=True):  # the runtime's path
        opt_a.zero_grad(set_to_none=True)
        xg.predict(opt_a, s=2)
        loss(net_a(x), y).backward()
        xg.restore(opt_a)
        opt_a.step()
    last = {}
    for x, y in zip(*_batches(), strict=True):  # Algorithm 1 by hand, Δθ from the reference
        params = [p for g in opt_b.param_groups for p in g["params"]]
        theta = [p.detach().clone() for p in params]  # 1: store θt
        theta_of = dict(zip(params, theta, strict=True))
        with torch.no_grad():
            for group in opt_b.param_groups:
                for p in group["params"]:
                    t = theta_of[p]
                    if not opt_b.state.get(p):
                        continue  # no state yet: Δθ = 0
                    g_last = ref.last_gradient(*last[p], group, l2)
                    d = reference(opt_b.state[p], group, t, g_last)  # 2: Δθ
                    p.copy_(t.double() - float(group["lr"]) * 2 * d)  # 3: load θ̂
        opt_b.zero_grad()
        loss(net_b(x), y).backward()  # 4-5
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)  # 6: restore θt
                last[p] = (p.grad.clone(), t)
        opt_b.step()  # 7
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    net_c = _mlp(bias=cls is not optim.Muon)  # and prediction really changed the trajectory
    opt_c = cls(net_c.parameters(), **kwargs)
    for x, y in zip(*_batches(), strict=True):
        opt_c.zero_grad()
        loss(net_c(x), y).backward()
        opt_c.step()
    assert any(
        not torch.allclose(a, c)
        for a, c in zip(net_a.parameters(), net_c.parameters(), strict=True)
    )


# --- registry ----------------------------------------------------------------------------------


def test_unknown_class_lists_supported_classes():
    class Mine(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    with pytest.raises(TypeError) as err:
        xg.predict(Mine([torch.zeros(2, requires_grad=True)]))
    msg = str(err.value)
    assert "Mine" in msg and "register(" in msg
    for name in ("SGD", "Adadelta", "ASGD", "Rprop", "Adafactor", "Muon", "SparseAdam"):
        assert f"torch.optim.{name}" in msg
    assert "lion_pytorch.Lion" in msg and "transformers.optimization.Adafactor" in msg


def test_lbfgs_keeps_its_refusal():
    with pytest.raises(TypeError, match="closure-driven"):
        xg.predict(optim.LBFGS([torch.zeros(2, requires_grad=True)]))


def test_every_torch_optimizer_but_lbfgs_has_a_rule():
    from xgrad_rewrite.runtime.registry import rule_for

    classes = [
        c
        for c in vars(optim).values()
        if isinstance(c, type) and issubclass(c, optim.Optimizer) and c is not optim.Optimizer
    ]
    assert len(classes) >= 15
    for cls in classes:
        if cls is optim.LBFGS:
            continue
        p = torch.zeros(2, 2, requires_grad=True)
        assert rule_for(cls([p])).name


# --- the MNIST-style example, patched, trained with Adadelta ------------------------------------


def test_digits_example_trains_with_adadelta_patched(tmp_path):
    pytest.importorskip("sklearn")
    script = tmp_path / "train_digits.py"
    shutil.copy(ROOT / "examples" / "train_digits.py", script)
    cli = Path(sys.executable).with_name("xgrad-rewrite")
    patch = [str(cli)] if cli.exists() else [sys.executable, "-m", "xgrad_rewrite.cli"]
    subprocess.run([*patch, "--s", "2", str(script)], check=True, capture_output=True)
    assert "xgrad.predict(optimizer, s=2)" in script.read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGRAD_")}
    out = subprocess.run(
        [sys.executable, str(script), "--optimizer", "adadelta", "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    accuracy = float(re.findall(r"Accuracy: ([\d.]+)%", out.stdout)[-1])
    assert accuracy > 50.0, out.stdout[-1000:]


def test_codemods_static_list_mirrors_the_registry():
    """The codemod (no torch) keeps its own list of classes with a rule: it must match."""
    from xgrad_rewrite.codemod.analysis.known_optimizers import SUPPORTED
    from xgrad_rewrite.optim import AdaBelief, AdaM3
    from xgrad_rewrite.runtime.registry import supported

    names = {n.rpartition(".")[2] for n in supported() if n.startswith("torch.optim.")}
    names |= {AdaBelief.__name__, AdaM3.__name__}
    assert names == set(SUPPORTED)
    assert "LBFGS" not in SUPPORTED
