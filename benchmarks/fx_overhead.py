"""Training-step time of the FX path against the eager predict/restore path and the base optimizer.

One process, three twin models (same weights, same data) per model × optimizer:

- base:  zero_grad, forward, backward, step (no XGrad)
- eager: the same with `xgrad.predict(opt, s=1)` before the forward and `xgrad.restore(opt)`
         before the step (the default `xgrad-rewrite` patch)
- fx:    the model made `xgrad.fx.predictive(model, opt, s=1)`, trained like the base one

Each variant runs `--steps` steps per round, variants rotate within a round, `--rounds` rounds.
The table gives the best (minimum) per-step time over rounds, the least disturbed by other
processes on a shared machine, the ratios of those, and the median ratios for comparison.
`refresh` is the FX path's own work per step (the step post-hook: Δθ by the runtime's rules,
copied into d), `predict+restore` the eager path's (both timed alone, median of 20 calls).

    python benchmarks/fx_overhead.py --out benchmarks/results/fx_overhead_cpu.md
    python benchmarks/fx_overhead.py --device cuda --out benchmarks/results/fx_overhead_cuda.md
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for our helpers

from machine import cpu_model  # noqa: E402
from runtime_overhead import sync  # noqa: E402

import xgrad_rewrite.fx as xfx  # noqa: E402
import xgrad_rewrite.runtime as xg  # noqa: E402


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )  # fmt: skip


def cnn() -> nn.Module:
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16, 1), *block(16, 32, 2), *block(32, 32, 1), *block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "MLP 784-512-512-10, batch 128": (mlp, (128, 1, 28, 28)),
    "CNN 4 conv+BN, 32x32, batch 32": (cnn, (32, 3, 32, 32)),
}

OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "SGDM": (torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=5e-4)),
    "Adam": (torch.optim.Adam, dict(lr=1e-3)),
}


def median_ms(fn: Callable[[], None], device: torch.device, n: int = 20) -> float:
    times = []
    for _ in range(n):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(model_name: str, opt_name: str, device: torch.device, steps: int, rounds: int) -> dict:
    build, shape = MODELS[model_name]
    cls, kwargs = OPTIMIZERS[opt_name]
    torch.manual_seed(0)
    base = build().to(device)
    models = {"base": base, "eager": copy.deepcopy(base), "fx": copy.deepcopy(base)}
    opts = {k: cls(m.parameters(), **kwargs) for k, m in models.items()}
    xfx.predictive(models["fx"], opts["fx"], s=1)
    x = torch.randn(*shape, device=device)
    y = torch.randint(0, 10, (shape[0],), device=device)

    def step(name: str) -> None:
        model, opt = models[name], opts[name]
        opt.zero_grad(set_to_none=True)
        if name == "eager":
            xg.predict(opt, s=1)
        F.cross_entropy(model(x), y).backward()
        if name == "eager":
            xg.restore(opt)
        opt.step()

    for name in models:  # warm-up: state exists, allocator and caches settled
        for _ in range(3):
            step(name)
    per_step: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for r in range(rounds):
        for name in order[r % 3 :] + order[: r % 3]:
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(name)
            sync(device)
            per_step[name].append((time.perf_counter() - start) / steps * 1e3)
    result = {name: min(ts) for name, ts in per_step.items()}
    for name in ("eager", "fx"):
        result[f"{name} median ratio"] = statistics.median(per_step[name]) / statistics.median(
            per_step["base"]
        )
    result["refresh"] = median_ms(models["fx"].forward.refresh, device)

    def predict_restore() -> None:
        xg.predict(opts["eager"], s=1)
        xg.restore(opts["eager"])

    result["predict+restore"] = median_ms(predict_restore, device)
    result["params"] = sum(p.numel() for p in base.parameters())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    rows = []
    for model_name in MODELS:
        for opt_name in OPTIMIZERS:
            r = measure(model_name, opt_name, device, args.steps, args.rounds)
            rows.append(
                f"| {model_name} | {opt_name} | {r['params'] / 1e6:.2f}M | {r['base']:.2f} | "
                f"{r['eager']:.2f} | {r['fx']:.2f} | {r['eager'] / r['base']:.3f} | "
                f"{r['fx'] / r['base']:.3f} | {r['fx'] / r['eager']:.3f} | "
                f"{r['eager median ratio']:.3f} | {r['fx median ratio']:.3f} | "
                f"{r['predict+restore']:.2f} | {r['refresh']:.2f} |"
            )
            print(rows[-1], flush=True)
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{cpu_model()}, {os.cpu_count()} cores visible, {args.threads} torch threads"
    report = "\n".join(
        [
            "# FX path overhead: step time of base vs eager predict/restore vs FX",
            "",
            f"Command: `python {' '.join(['benchmarks/fx_overhead.py', *sys.argv[1:]])}`",
            "",
            f"- machine: {machine}; load average at the end "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}",
            f"- Python {platform.python_version()}, torch {torch.__version__}, s=1, "
            f"{args.rounds} rounds x {args.steps} steps per variant; ms columns: best round's "
            "time per step (zero_grad+forward+backward+step)",
            "",
            "| model | optimizer | params | base ms | eager ms | fx ms | eager/base | "
            "fx/base | fx/eager | eager/base (medians) | fx/base (medians) | "
            "predict+restore ms | fx refresh ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    print(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
