"""Optimizers outside torch (lion-pytorch, timm, transformers, bitsandbytes), registered
lazily; each against the independent reference in tests/support/reference_coverage.py. Tests
of a package that is not installed are skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import support.reference_coverage as ref
import torch
from test_runtime_coverage import run_case as run_reference_case

import xgrad_rewrite.runtime as xg
from xgrad_rewrite.runtime import registry
from xgrad_rewrite.runtime.rules import Delta, Rule

THIRD_PARTY = ("lion_pytorch", "timm", "transformers", "bitsandbytes")


def test_importing_the_runtime_imports_no_third_party_package():
    code = textwrap.dedent(
        f"""
        import sys
        import torch
        import xgrad_rewrite, xgrad_rewrite.runtime as xg
        p = torch.zeros(3, requires_grad=True)
        opt = torch.optim.Adadelta([p])
        xg.predict(opt); xg.restore(opt)
        try:
            xg.predict(type("Mine", (torch.optim.Optimizer,), {{}})([p], {{}}))
        except TypeError:
            pass
        print([m for m in {THIRD_PARTY!r} if m in sys.modules])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def fresh_registry():
    """The registry as if no third-party optimizer had been looked up yet; put back afterwards."""
    saved, done = dict(registry._RULES), set(registry._THIRD_PARTY_DONE)
    from xgrad_rewrite.runtime.rules import thirdparty

    for cls in list(registry._RULES):
        if cls.__module__.partition(".")[0] in thirdparty.PACKAGES:
            del registry._RULES[cls]
    registry._THIRD_PARTY_DONE.clear()
    yield
    registry._RULES.clear()
    registry._RULES.update(saved)
    registry._THIRD_PARTY_DONE.clear()
    registry._THIRD_PARTY_DONE.update(done)


def test_third_party_rules_are_registered_on_first_lookup(fresh_registry):
    lion_pytorch = pytest.importorskip("lion_pytorch")
    assert lion_pytorch.Lion not in registry._RULES
    p = torch.ones(3, requires_grad=True)
    xg.predict(lion_pytorch.Lion([p]))
    assert registry._RULES[lion_pytorch.Lion].name == "Lion"


def test_a_users_rule_registered_first_wins(fresh_registry):
    lion_pytorch = pytest.importorskip("lion_pytorch")
    xg.register(lion_pytorch.Lion, Rule(lambda b: Delta(num=b.params), name="mine"))
    opt = lion_pytorch.Lion([torch.ones(2, requires_grad=True)])
    assert registry.rule_for(opt).name == "mine"


def run_case(make, reference, groups, shapes, steps, s, dtype, lr_of=float, tol=None):
    """The coverage driver with dense gradients and no L2 term; every trained parameter moves."""
    run_reference_case(
        make, reference, groups, shapes, False, False, steps, s, dtype, tol, lr_of=lr_of, still=0
    )


LION_GROUPS = [dict(lr=1e-3), dict(lr=3e-4, betas=(0.8, 0.9), weight_decay=0.1)]
SHAPES = [(3, 4), (5,), (2, 3, 4), (2, 2)]
STEPS_DTYPES = [(1, torch.float32), (2, torch.float32), (5, torch.float32), (2, torch.bfloat16)]
STEPS_IDS = ["1-fp32", "2-fp32", "5-fp32", "2-bf16"]


@pytest.mark.parametrize(("steps", "dtype"), STEPS_DTYPES, ids=STEPS_IDS)
@pytest.mark.parametrize("module", ["lion_pytorch", "lion_pytorch.foreach"])
def test_lion_pytorch(module, steps, dtype):
    pytest.importorskip("lion_pytorch")
    lion = __import__(module, fromlist=["Lion"]).Lion
    run_case(lambda groups: lion(groups, lr=1e-3), ref.lion, LION_GROUPS, SHAPES, steps, 2, dtype)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_timm_lion(steps):
    timm_optim = pytest.importorskip("timm.optim")
    groups = [dict(lr=1e-3, maximize=True), dict(lr=3e-4, caution=True, weight_decay=0.1)]

    def reference(st, group, theta, g):
        u = ref.lion(st, group, theta, g)
        if group["caution"]:
            mask = (u * g > 0).double()
            u = u * mask / mask.mean().clamp(min=1e-3)
        return u

    run_case(lambda gs: timm_optim.Lion(gs), reference, groups, SHAPES, steps, 2, torch.float32)


@pytest.mark.parametrize(("steps", "dtype"), STEPS_DTYPES, ids=STEPS_IDS)
def test_transformers_adafactor(steps, dtype):
    optimization = pytest.importorskip("transformers.optimization")
    groups = [
        dict(lr=None),  # relative step × RMS(θ) (the default)
        dict(lr=0.01, relative_step=False, scale_parameter=False, beta1=0.9, weight_decay=0.1),
    ]
    run_case(
        lambda gs: optimization.Adafactor(gs, lr=None),
        ref.hf_adafactor,
        groups,
        SHAPES,
        steps,
        2,
        dtype,
        lr_of=lambda lr: 1.0 if lr is None else float(lr),
    )


def test_transformers_adafactor_warmup_init():
    optimization = pytest.importorskip("transformers.optimization")
    groups = [dict(lr=None, warmup_init=True), dict(lr=None, clip_threshold=0.5)]
    run_case(
        lambda gs: optimization.Adafactor(gs, lr=None),
        ref.hf_adafactor,
        groups,
        SHAPES,
        3,
        1,
        torch.float32,
        lr_of=lambda lr: 1.0,
    )


def _bnb_reference(st, group, theta, g):
    functional = pytest.importorskip("bitsandbytes.functional")
    m, v = st["state1"], st["state2"]
    if m.dtype == torch.uint8:  # 8-bit blockwise state: dequantised as bitsandbytes does
        m = functional.dequantize_blockwise(
            m, absmax=st["absmax1"], code=st["qmap1"], blocksize=256
        )
        v = functional.dequantize_blockwise(
            v, absmax=st["absmax2"], code=st["qmap2"], blocksize=256
        )
    return ref.adam_on(m, v, group, float(st["step"]))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize("name", ["AdamW8bit", "Adam8bit", "PagedAdamW8bit", "AdamW", "PagedAdamW"])
def test_bitsandbytes_adam(name, steps):
    bnb = pytest.importorskip("bitsandbytes")
    cls = getattr(bnb.optim, name)
    groups = [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1)]
    # 80×80 ≥ bitsandbytes' min_8bit_size: 8-bit state; the small ones keep 32-bit state
    shapes = [(80, 80), (5,), (4, 4), (2, 2)]
    run_case(lambda gs: cls(gs), _bnb_reference, groups, shapes, steps, 2, torch.float32)


TIMM_CASES = [
    (
        "NAdamW",
        ref.timm_nadamw,
        [
            dict(lr=1e-3),
            dict(
                lr=3e-3,
                betas=(0.8, 0.99),
                maximize=True,
                caution=True,
                clipping_threshold=0.5,
                weight_decay=0.1,
            ),
        ],
    ),
    (
        "LaProp",
        ref.timm_laprop,
        [dict(lr=1e-3), dict(lr=3e-3, betas=(0.8, 0.99), caution=True, weight_decay=0.1)],
    ),
    (
        "Adan",
        ref.timm_adan,
        [
            dict(lr=1e-3),
            dict(lr=3e-3, betas=(0.9, 0.9, 0.95), no_prox=True, caution=True, weight_decay=0.1),
        ],
    ),
    (
        "Lamb",
        ref.timm_lamb,
        [dict(lr=1e-3), dict(lr=3e-3, weight_decay=0.1, trust_clip=True, caution=True)],
    ),
    ("AdamP", ref.timm_adamp, [dict(lr=1e-3), dict(lr=3e-3, nesterov=True, delta=2.0)]),
]


@pytest.mark.parametrize("steps", [1, 2, 5])
@pytest.mark.parametrize(
    ("name", "reference", "groups"), TIMM_CASES, ids=[c[0] for c in TIMM_CASES]
)
def test_timm_optimizers(name, reference, groups, steps):
    timm_optim = pytest.importorskip("timm.optim")
    cls = getattr(timm_optim, name)
    run_case(lambda gs: cls(gs), reference, groups, SHAPES, steps, 2, torch.float32)
