"""What XGrad costs on a GPU: training-step time and peak memory, base vs XGrad-S2, as ratios.

The paper's cost figures (docs/method.md): +5.67 % time over SGDM, +11.21 % over Adam; +1.8 % and
+5.0 % peak GPU memory (PyTorch 1.12, P100/M40). This measures the same on this project's runtime:
ResNet-18 and ResNet-50 (CIFAR-style, defined here, no torchvision) on synthetic 32x32 inputs at
batch 128, and a 2-layer LSTM language model, each with SGDM and Adam.

Time: the base and the XGrad model/optimizer pairs live side by side and run in alternating blocks
of steps (ABBA order), so clock drift and other load hit both alike; the figure is the median
block. Memory: each variant alone on a clean allocator, ``torch.cuda.max_memory_allocated`` over
its steps (parameters, gradients, optimizer state, activations, and for XGrad the stash).

    python benchmarks/gpu_cost.py                         # on a CUDA machine
    python benchmarks/gpu_cost.py --device cpu --tiny --out /tmp/gpu_cost.md   # logic check only
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `machine`

from machine import cpu_model  # noqa: E402

import xgrad_rewrite.runtime as xgrad  # noqa: E402

PAPER = {"sgdm": (5.67, 1.8), "adam": (11.21, 5.0)}  # (% time, % peak memory) over the base
TARGET_TIME_PCT = 3.0  # this project's target: below the paper's, <= 3 % at batch 128


# --- models -------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """The CIFAR ResNet (3x3 stem, no max-pool) that the paper's CIFAR-10 runs use."""

    def __init__(self, block: type, layers: list[int], base: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base))
        stages, cin = [], base
        for i, count in enumerate(layers):
            width = base * 2**i
            for j in range(count):
                stages.append(block(cin, width, 2 if i and not j else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class LSTMLM(nn.Module):
    """A word-level LSTM LM shaped like the paper's PTB LSTMs (AdaBelief's setup)."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0])


@dataclass(frozen=True)
class Workload:
    """A model builder and a synthetic batch; ``loss(model, batch)`` is one forward."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[torch.device], tuple[torch.Tensor, torch.Tensor]]
    shape: str


def workloads(tiny: bool) -> list[Workload]:
    cnn_batch, lm_batch, base = (4, 2, 8) if tiny else (128, 20, 64)
    vocab, embed, hidden, seq = (50, 16, 32, 8) if tiny else (10000, 400, 1150, 70)

    def images(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(cnn_batch, 3, 32, 32, generator=gen)
        return x.to(device), torch.randint(0, 10, (cnn_batch,), generator=gen).to(device)

    def tokens(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator(device="cpu").manual_seed(0)
        ids = torch.randint(0, vocab, (lm_batch, seq + 1), generator=gen).to(device)
        return ids[:, :-1], ids[:, 1:]

    r18, r50 = ([1, 1, 1, 1], [1, 1, 1, 1]) if tiny else ([2, 2, 2, 2], [3, 4, 6, 3])
    return [
        Workload("ResNet-18", lambda: ResNet(BasicBlock, r18, base), images,
                 f"32x32, batch {cnn_batch}"),
        Workload("ResNet-50", lambda: ResNet(Bottleneck, r50, base), images,
                 f"32x32, batch {cnn_batch}"),
        Workload("LSTM-2 LM", lambda: LSTMLM(vocab, embed, hidden, 2), tokens,
                 f"vocab {vocab}, {embed}/{hidden}, seq {seq}, batch {lm_batch}"),
    ]  # fmt: skip


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "sgdm":
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return torch.optim.Adam(model.parameters(), lr=1e-3)


# --- measuring ----------------------------------------------------------------------------------


class Trainer:
    """One model + optimizer; ``steps(n)`` runs n training steps, XGrad-S``s`` when s > 0."""

    def __init__(self, work: Workload, optimizer: str, s: float, device: torch.device) -> None:
        torch.manual_seed(0)
        self.model = work.build().to(device)
        self.optimizer = make_optimizer(optimizer, self.model)
        self.inputs, self.targets = work.batch(device)
        self.s = s

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.optimizer.zero_grad(set_to_none=True)
            if self.s:
                xgrad.predict(self.optimizer, s=self.s)
            out = self.model(self.inputs)
            loss = F.cross_entropy(out.reshape(-1, out.size(-1)), self.targets.reshape(-1))
            loss.backward()
            if self.s:
                xgrad.restore(self.optimizer)
            self.optimizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(work: Workload, optimizer: str, s: float, device: torch.device, n: int) -> float:
    """Peak allocated bytes over n steps after warm-up, this variant alone; NaN off CUDA."""
    if device.type != "cuda":
        return float("nan")
    torch.cuda.empty_cache()
    trainer = Trainer(work, optimizer, s, device)
    trainer.steps(2)  # optimizer state exists, so prediction (and its stash) is active
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    trainer.steps(n)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device)
    del trainer
    torch.cuda.empty_cache()
    return float(peak)


def step_times(
    work: Workload, optimizer: str, s: float, device: torch.device, block: int, rounds: int
) -> tuple[float, float]:
    """Median seconds per step (base, XGrad) over ``rounds`` ABBA-ordered pairs of blocks."""
    base = Trainer(work, optimizer, 0, device)
    pred = Trainer(work, optimizer, s, device)
    for trainer in (base, pred):
        trainer.steps(3)  # warm-up: state, cuDNN autotune, allocator
    times: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            trainer = (base, pred)[which]
            sync(device)
            start = time.perf_counter()
            trainer.steps(block)
            sync(device)
            times[which].append((time.perf_counter() - start) / block)
    return statistics.median(times[0]), statistics.median(times[1])


@dataclass
class Row:
    model: str
    shape: str
    optimizer: str
    base_s: float
    xgrad_s: float
    base_mem: float
    xgrad_mem: float

    @property
    def time_pct(self) -> float:
        return 100.0 * (self.xgrad_s / self.base_s - 1.0)

    @property
    def mem_pct(self) -> float:
        return 100.0 * (self.xgrad_mem / self.base_mem - 1.0)


# --- report -------------------------------------------------------------------------------------


def describe_machine(device: torch.device) -> str:
    text = f"{cpu_model()}, {os.cpu_count()} cores"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gib = props.total_memory / 2**30
        text = f"{props.name} ({gib:.0f} GiB), CUDA {torch.version.cuda}; {text}"
    return text


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:+.2f} %"


def _mib(value: float) -> str:
    return "n/a" if value != value else f"{value / 2**20:,.0f}"


def render(rows: list[Row], ctx: dict) -> str:
    names = {"sgdm": "SGDM", "adam": "Adam"}
    lines = [
        "# XGrad training cost: step time and peak memory, base vs XGrad-S2",
        "",
        f"- command: `{ctx['command']}`",
        f"- device: {ctx['machine']}",
        f"- torch {torch.__version__}, Python {platform.python_version()}; date {ctx['date']}",
        f"- time: median of {ctx['rounds']} blocks of {ctx['block']} steps per variant, base and "
        "XGrad alternating (ABBA) in one process; memory: `torch.cuda.max_memory_allocated` over "
        f"{ctx['block']} steps, each variant alone",
        "",
        "| model | input | optimizer | base ms/step | XGrad-S2 ms/step | time overhead "
        "| base peak MiB | XGrad-S2 peak MiB | memory overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.shape} | {names[r.optimizer]} | {1e3 * r.base_s:.2f} "
            f"| {1e3 * r.xgrad_s:.2f} | {_pct(r.time_pct)} | {_mib(r.base_mem)} "
            f"| {_mib(r.xgrad_mem)} | {_pct(r.mem_pct)} |"
        )
    lines += [
        "",
        "| optimizer | mean time overhead here | paper | target | mean memory overhead here "
        "| paper |",
        "|---|---|---|---|---|---|",
    ]
    for opt, (paper_time, paper_mem) in PAPER.items():
        mine = [r for r in rows if r.optimizer == opt]
        if not mine:
            continue
        time_mean = statistics.fmean(r.time_pct for r in mine)
        mem_mean = statistics.fmean(r.mem_pct for r in mine)
        lines.append(
            f"| {names[opt]} | {_pct(time_mean)} | +{paper_time} % | <= +{TARGET_TIME_PCT} % "
            f"| {_pct(mem_mean)} | +{paper_mem} % |"
        )
    lines += [
        "",
        "Paper: PyTorch 1.12 on P100/M40 GPUs, averaged over its CIFAR-10/100 and other models "
        "(docs/method.md). Here: this project's runtime (`xgrad_rewrite.runtime`, foreach "
        "kernels, one stash copy of the parameters).",
    ]
    if ctx["tiny"]:
        lines += ["", "**--tiny: toy sizes for a logic check; these figures mean nothing.**"]
    return "\n".join(lines) + "\n"


def given_command(ctx: click.Context) -> str:
    """The command line as given (options not left at their defaults), independent of argv."""
    words = ["python", "benchmarks/gpu_cost.py"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        words += [param.opts[-1]] if param.is_flag else [param.opts[-1], str(value)]
    return shlex.join(words)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--device", default="cuda", show_default=True, help="cuda, cuda:N or cpu.")
@click.option("--tiny", is_flag=True, help="Toy sizes and few steps: checks the logic, on CPU.")
@click.option("--s", "s", default=2.0, show_default=True, help="Prediction steps of XGrad.")
@click.option("--block", default=None, type=int, help="Steps per timed block [20; tiny 2].")
@click.option("--rounds", default=None, type=int, help="Timed blocks per variant [10; tiny 2].")
@click.option("--models", default="ResNet-18,ResNet-50,LSTM-2 LM", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu_cost.md"),
    show_default="benchmarks/results/gpu_cost.md",
)
def main(
    device: str, tiny: bool, s: float, block: int | None, rounds: int | None, models: str, out: str
) -> None:
    """Measure XGrad's step-time and peak-memory overhead over SGDM and Adam."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("CUDA is not available here; --device cpu --tiny checks the logic")
    block = block or (2 if tiny else 20)
    rounds = rounds or (2 if tiny else 10)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(1)  # a shared CPU: spinning OpenMP threads would swamp the ratios
    wanted = [m.strip() for m in models.split(",")]
    rows = []
    for work in (w for w in workloads(tiny) if w.name in wanted):
        for opt in ("sgdm", "adam"):
            base_s, xgrad_s = step_times(work, opt, s, dev, block, rounds)
            base_mem = peak_memory(work, opt, 0, dev, block)
            xgrad_mem = peak_memory(work, opt, s, dev, block)
            row = Row(work.name, work.shape, opt, base_s, xgrad_s, base_mem, xgrad_mem)
            rows.append(row)
            click.echo(
                f"{work.name:10} {opt:5} {1e3 * base_s:8.2f} -> {1e3 * xgrad_s:8.2f} ms/step "
                f"({_pct(row.time_pct)}), peak {_mib(base_mem)} -> {_mib(xgrad_mem)} MiB "
                f"({_pct(row.mem_pct)})",
                err=True,
            )
    ctx = {
        "command": given_command(click.get_current_context()),
        "machine": describe_machine(dev),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "block": block,
        "rounds": rounds,
        "tiny": tiny,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(render(rows, ctx))
    click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
