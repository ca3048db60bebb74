"""Cost of XGrad's predict+restore against the base optimizer's own step, in one run.

A ResNet-50-sized parameter set (the real ResNet-50 shapes: ~25.6M params in 161 tensors) with
synthetic gradients. Per optimizer it reports, on the same tensors and in the same process:

- step:      best time of `optimizer.step()` without XGrad (foreach=True unless noted)
- xgrad:     best time of `predict(s=1)` + `restore()` (the runtime's own work)
- hook:      time of the step pre-hook every step runs (restore check + g_t cache for RMSprop)
- ratio:     (xgrad + hook) / step; target <= 1.0 against the foreach Adam/AdamW step
- memory:    extra bytes the runtime holds between steps (stash buffers, g_t cache), as a
             multiple of the parameter bytes, by accounting of its own tensors; on CUDA also the
             transient peak inside predict (`torch.cuda.max_memory_allocated`).

    python benchmarks/runtime_overhead.py                      # CPU, 2 threads (CI's setting)
    python benchmarks/runtime_overhead.py --device cuda --out results/runtime_overhead_cuda.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `machine`

from machine import cpu_model  # noqa: E402

import xgrad_rewrite.runtime as xg  # noqa: E402
from xgrad_rewrite.optim import AdaBelief, AdaM3  # noqa: E402
from xgrad_rewrite.runtime import api  # noqa: E402


def resnet50_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision's ResNet-50 (conv weights, BN weight+bias, fc)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for b in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,)]
            shapes += [(planes, planes, 3, 3), (planes,), (planes,)]
            shapes += [(planes * 4, planes, 1, 1), (planes * 4,), (planes * 4,)]
            if b == 0:
                shapes += [(planes * 4, inplanes, 1, 1), (planes * 4,), (planes * 4,)]
            inplanes = planes * 4
    return shapes + [(1000, 2048), (1000,)]


OPTIMIZERS: list[tuple[str, Callable[..., torch.optim.Optimizer], dict]] = [
    ("SGDM", torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=True)),
    ("Adam", torch.optim.Adam, dict(lr=1e-3, foreach=True)),
    ("AdamW", torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.01, foreach=True)),
    ("AdamW fused", torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.01, fused=True)),
    ("Adam for-loop (CPU default)", torch.optim.Adam, dict(lr=1e-3, foreach=False)),
    ("RMSprop", torch.optim.RMSprop, dict(lr=1e-3, foreach=True)),
    ("AdaBelief", AdaBelief, dict(lr=1e-3, foreach=True)),
    ("AdaM3", AdaM3, dict(lr=1e-3, foreach=True)),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict:
    """Best (minimum) wall and process-CPU time of each fn, interleaved round by round (s).

    The minimum and the interleaving keep a shared, busy machine from favouring one side; the
    process CPU time (all threads) is the work done, which other processes disturb less.
    """
    best = {name: [float("inf"), float("inf")] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return best


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measure(name, cls, kwargs, shapes, device, repeats) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=gen).to(device).requires_grad_() for s in shapes]
    grads = [torch.randn(s, generator=gen).to(device) * 1e-3 for s in shapes]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    param_bytes = nbytes(params)
    plain = cls(params, **kwargs)
    plain.step()
    opt = cls(params, **kwargs)
    opt.load_state_dict(plain.state_dict())
    xg.predict(opt, 1)  # hook on; a first step fills the g_t cache where a rule needs it
    xg.restore(opt)
    opt.step()

    def predict_restore() -> None:
        xg.predict(opt, 1)
        xg.restore(opt)

    def hook() -> None:  # what the step pre-hook adds to every step (g_t cache where needed)
        api._pre_step(opt, (), {})

    best = timed({"step": plain.step, "hook": hook, "xgrad": predict_restore}, device, repeats)
    (t_step, c_step), (t_xgrad, c_xgrad) = best["step"], best["xgrad"]
    hook, c_hook = best["hook"]

    record = api._RECORDS[opt]
    held = nbytes(record.grads.values()) + nbytes(record.buffers.values())
    peak = None
    if device.type == "cuda":  # transient temporaries inside predict (e.g. Adam's denominator)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        xg.predict(opt, 1)
        peak = torch.cuda.max_memory_allocated() - base
        xg.restore(opt)
    return dict(
        name=name,
        step_ms=t_step * 1e3,
        xgrad_ms=t_xgrad * 1e3,
        hook_ms=hook * 1e3,
        ratio=(t_xgrad + hook) / t_step,
        cpu_step_ms=c_step * 1e3,
        cpu_xgrad_ms=c_xgrad * 1e3,
        cpu_ratio=(c_xgrad + c_hook) / c_step,
        held=held / param_bytes,
        peak=None if peak is None else peak / param_bytes,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CI: 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", action="append", help="optimizer names to run (repeatable)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shapes = resnet50_shapes()
    n_params = sum(torch.Size(s).numel() for s in shapes)
    rows = []
    for name, cls, kwargs in OPTIMIZERS:
        if args.only and name not in args.only:
            continue
        try:
            rows.append(measure(name, cls, kwargs, shapes, device, args.repeats))
        except (RuntimeError, ValueError) as error:  # e.g. fused=True where unsupported
            rows.append(dict(name=name, error=str(error).splitlines()[0]))
        print(rows[-1], flush=True)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    lines = [
        f"# XGrad runtime overhead ({device.type})",
        "",
        f"- command: `{' '.join(['python', 'benchmarks/runtime_overhead.py', *raw])}`",
        f"- torch {torch.__version__}, Python {platform.python_version()}, device: {dev}, "
        f"torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}",
        f"- parameters: ResNet-50 shapes, {n_params / 1e6:.1f}M fp32 in {len(shapes)} tensors, "
        f"synthetic gradients; best of {args.repeats} interleaved runs",
        "",
        "| optimizer | step ms | predict+restore ms | hook ms | ratio (wall) "
        "| step CPU ms | predict+restore CPU ms | ratio (CPU) "
        "| held between steps | transient in predict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | not run: {r['error']} | | | | | | | | |")
            continue
        peak = "not measured (CPU)" if r["peak"] is None else f"{r['peak']:.2f}x"
        lines.append(
            f"| {r['name']} | {r['step_ms']:.1f} | {r['xgrad_ms']:.1f} | {r['hook_ms']:.1f} "
            f"| {r['ratio']:.2f} | {r['cpu_step_ms']:.1f} | {r['cpu_xgrad_ms']:.1f} "
            f"| {r['cpu_ratio']:.2f} | {r['held']:.2f}x | {peak} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
