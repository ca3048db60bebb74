"""FX path under DistributedDataParallel (one gloo process): `predictive(ddp, opt)` works."""

from __future__ import annotations

import socket

import pytest
import torch
from support.fx_models import assert_same, batches, pair, train_eager, train_fx

import xgrad_rewrite.fx as xfx

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)


@pytest.fixture
def process_group():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_wrapper_is_accepted_and_equals_eager_path(process_group):
    eager, fx = pair("twice")
    ddp = torch.nn.parallel.DistributedDataParallel(fx)
    opt_e = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_f = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    assert xfx.predictive(ddp, opt_f, s=2) is ddp
    assert isinstance(fx.forward, xfx.PredictiveForward)
    data = batches("twice", 4)
    assert_same(train_eager(eager, opt_e, data, 2), train_fx(ddp, opt_f, data))
    assert not any("xgrad" in name for name, _ in ddp.named_buffers())  # nothing to broadcast
