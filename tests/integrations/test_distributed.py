"""DDP and FSDP2 on 2 CPU processes (gloo): XGrad keeps ranks identical and equals one process.

Each rank trains on its half of a global batch; DDP (and FSDP2's reduce-scatter) averages the
gradients, so the weights must equal a single-process XGrad run on the whole batch with a mean
loss. The workers live at module level so ``torch.multiprocessing.spawn`` can pickle them.
"""

from __future__ import annotations

import socket

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

import xgrad_rewrite.runtime as xgrad  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WORLD, GLOBAL_BATCH, STEPS, S = 2, 8, 5, 2
OPTIMIZERS = {
    "sgdm": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 1),
    )


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(GLOBAL_BATCH, 4, generator=g), torch.randn(GLOBAL_BATCH, 1, generator=g)


def storage(model) -> list[tuple[int, int]]:
    """Each parameter's identity and where its (local) data lives."""
    local = [getattr(p, "_local_tensor", p) for p in model.parameters()]
    return [(id(p), t.data_ptr()) for p, t in zip(model.parameters(), local, strict=True)]


def xgrad_steps(model, optimizer, rows: slice, s: float = S) -> None:
    """The loop the codemod writes; predict and restore must write in place, never rebind."""
    where = storage(model)
    for step in range(STEPS):
        x, y = batch(step)
        optimizer.zero_grad()
        xgrad.predict(optimizer, s=s)
        assert storage(model) == where
        torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
        xgrad.restore(optimizer)
        assert storage(model) == where
        optimizer.step()


def single_process(name: str, s: float = S) -> list[torch.Tensor]:
    model = make_model()
    xgrad_steps(model, OPTIMIZERS[name](model.parameters()), slice(None), s)
    return [p.detach() for p in model.parameters()]


def _init(rank: int, port: int) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )


def _shutdown() -> None:
    """Tear down only once every rank is done: a rank that exits while the other still talks to
    it can abort in gloo's threads ("terminate called without an active exception")."""
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _gathered_equal(flat: torch.Tensor) -> bool:
    copies = [torch.empty_like(flat) for _ in range(WORLD)]
    dist.all_gather(copies, flat)
    return all(torch.equal(copies[0], c) for c in copies[1:])


def ddp_worker(rank: int, port: int, out: str) -> None:
    _init(rank, port)
    try:
        half = GLOBAL_BATCH // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        results = {}
        for name, make_optimizer in OPTIMIZERS.items():
            model = torch.nn.parallel.DistributedDataParallel(make_model())
            optimizer = make_optimizer(model.parameters())
            xgrad_steps(model, optimizer, rows)
            params = [p.detach().clone() for p in model.module.parameters()]
            same = _gathered_equal(torch.cat([p.flatten() for p in params]))
            results[name] = (params, same)
        if rank == 0:
            torch.save(results, out)
    finally:
        _shutdown()


def test_ddp_two_ranks_equal_single_process(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(ddp_worker, args=(free_port(), out), nprocs=WORLD, join=True)
    results = torch.load(out)
    for name in OPTIMIZERS:
        params, ranks_identical = results[name]
        assert ranks_identical, f"{name}: ranks diverged"
        for got, want in zip(params, single_process(name), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)
        plain = single_process(name, s=0)
        assert any(not torch.allclose(a, b) for a, b in zip(params, plain, strict=True))


def fsdp2_worker(rank: int, port: int, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    _init(rank, port)
    try:
        half = GLOBAL_BATCH // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        results = {}
        for name, make_optimizer in OPTIMIZERS.items():
            model = make_model()
            for layer in model:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer)
            fully_shard(model)
            optimizer = make_optimizer(model.parameters())
            error = None
            try:
                xgrad_steps(model, optimizer, rows)
            except Exception as e:  # reported to the parent, which fails or skips with it
                error = f"{type(e).__name__}: {e}".splitlines()[0]
            params = [p.full_tensor().detach().clone() for p in model.parameters()]
            same = _gathered_equal(torch.cat([p.flatten() for p in params]))
            results[name] = (params, same, error)
        if rank == 0:
            torch.save(results, out)
    finally:
        _shutdown()


def test_fsdp2_two_ranks_equal_single_process(tmp_path):
    pytest.importorskip("torch.distributed.fsdp", reason="no FSDP2 in this torch")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("torch.distributed.fsdp.fully_shard (FSDP2) is not in this torch")
    out = str(tmp_path / "fsdp2.pt")
    mp.spawn(fsdp2_worker, args=(free_port(), out), nprocs=WORLD, join=True)
    results = torch.load(out)
    for name in OPTIMIZERS:
        params, ranks_identical, error = results[name]
        assert error is None, f"{name}: {error}"
        assert ranks_identical, f"{name}: ranks diverged"
        for got, want in zip(params, single_process(name), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)
