"""Small models and the two training loops the FX tests compare (eager predict/restore vs FX)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import xgrad_rewrite.fx as xfx
import xgrad_rewrite.runtime as xg


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class CNN(nn.Module):
    """Conv (no bias: BatchNorm cancels it) → BatchNorm → ReLU, twice, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean(dim=(2, 3)))


class Tied(nn.Module):
    """A tiny language model whose output layer reuses the embedding matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 12, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.norm(self.embed(tokens)))).mean(dim=1)


class Twice(nn.Module):
    """One block called twice: both calls must read the same predicted weights."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.out = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(self.block(self.inp(x))))


def batches(name: str, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        if name == "cnn":
            x = torch.randn(6, 3, 6, 6, generator=gen)
        elif name == "tied":
            x = torch.randint(0, 12, (6, 5), generator=gen)
        else:
            x = torch.randn(6, 8, generator=gen)
        classes = 12 if name == "tied" else 4
        out.append((x, torch.randint(0, classes, (6,), generator=gen)))
    return out


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": MLP, "cnn": CNN, "tied": Tied, "twice": Twice}

OPTIMIZERS = {
    "SGDM": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    "Adam": (torch.optim.Adam, dict(lr=1e-2)),
    "AdamW": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.05)),
}


def pair(model_name: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = MODELS[model_name]()
    twin = copy.deepcopy(model)
    if model_name == "tied":  # deepcopy keeps the tie; make sure
        assert twin.out.weight is twin.embed.weight
    return model, twin


Record = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def train_eager(model, opt, data, s, scheduler=None) -> Record:
    """The runtime's eager path: predict, forward+backward on θ̂, restore, step."""
    losses, grads = [], []
    for i, (x, y) in enumerate(data):
        opt.zero_grad(set_to_none=True)
        xg.predict(opt, s=s)
        torch.manual_seed(100 + i)  # same dropout masks in both loops
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        xg.restore(opt)
        losses.append(loss.detach())
        grads.append(_grads(model))
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return losses, grads


def train_fx(model, opt, data, scheduler=None) -> Record:
    """The FX path: the model (already made predictive) is trained like a plain one."""
    losses, grads = [], []
    for i, (x, y) in enumerate(data):
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(100 + i)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.detach())
        grads.append(_grads(model))
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return losses, grads


def assert_same(a: Record, b: Record, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    for step, (la, lb) in enumerate(zip(a[0], b[0], strict=True)):
        torch.testing.assert_close(la, lb, rtol=rtol, atol=atol, msg=f"loss at step {step}")
    for step, (ga, gb) in enumerate(zip(a[1], b[1], strict=True)):
        assert ga.keys() == gb.keys()
        for name in ga:
            torch.testing.assert_close(
                ga[name], gb[name], rtol=rtol, atol=atol, msg=f"grad {name} at step {step}"
            )


def run_both(model_name, opt_name, steps, s, scheduler=None, compile_backend=None):
    """(eager record, FX record, eager model, FX model) from twin models and optimizers."""
    cls, kwargs = OPTIMIZERS[opt_name]
    eager, fx = pair(model_name)
    opt_e, opt_f = cls(eager.parameters(), **kwargs), cls(fx.parameters(), **kwargs)
    sched_e = scheduler(opt_e) if scheduler else None
    sched_f = scheduler(opt_f) if scheduler else None
    net = xfx.predictive(fx, opt_f, s=s)
    if compile_backend is not None:
        net = torch.compile(net, backend=compile_backend)
    data = batches(model_name, steps)
    rec_e = train_eager(eager, opt_e, data, s, sched_e)
    rec_f = train_fx(net, opt_f, data, sched_f)
    return rec_e, rec_f, eager, fx
