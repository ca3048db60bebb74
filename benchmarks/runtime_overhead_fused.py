"""XGrad's fused fast path against its foreach path, in one run, on any device.

Part `kernels`: on a ResNet-50-sized parameter set (161 tensors, 25.6M params, synthetic
gradients) per optimizer (SGDM, Adam, AdamW, AdaBelief, AdaM3): the optimizer's own step (foreach,
and fused where torch has one for the device) beside predict+restore under `XGRAD_IMPL=foreach`
and `XGRAD_IMPL=fused`, with the fused path's first call (its compile) and whether predictions
agree. Part `e2e`: training-step time and peak memory, base vs XGrad-S2 per implementation, for
ResNet-50 at batch 128 on 32x32 inputs (fp32 and bf16 autocast) and a GPT-2-small-shaped
transformer (bf16 autocast), all variants side by side in rotating order (median of rounds).

    python benchmarks/runtime_overhead_fused.py --device cuda \
        --out benchmarks/results/runtime_overhead_fused_cuda.md
    python benchmarks/runtime_overhead_fused.py --part kernels --threads 2   # CPU, CI's setting
    python benchmarks/runtime_overhead_fused.py --tiny --part all             # logic check, seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import cpu_model  # noqa: E402
from runtime_overhead import nbytes, resnet50_shapes, sync, timed  # noqa: E402

import xgrad_rewrite.runtime as xg  # noqa: E402
from xgrad_rewrite.optim import AdaBelief, AdaM3  # noqa: E402
from xgrad_rewrite.runtime import api, fused  # noqa: E402

IMPLS = ("foreach", "fused")
OPTIMIZERS: list[tuple[str, Callable[..., torch.optim.Optimizer], dict]] = [
    ("SGDM", torch.optim.SGD, dict(lr=0.01, momentum=0.9, weight_decay=5e-4)),
    ("Adam", torch.optim.Adam, dict(lr=1e-3)),
    ("AdamW", torch.optim.AdamW, dict(lr=1e-3, weight_decay=0.01)),
    ("AdaBelief", AdaBelief, dict(lr=1e-3)),
    ("AdaM3", AdaM3, dict(lr=1e-3)),
]
HAS_FUSED_STEP = {"SGDM", "Adam", "AdamW"}  # torch's own fused=True kernels


class impl_env:
    """Set XGRAD_IMPL for a block (the runtime reads it at every predict)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __enter__(self) -> None:
        self.old = os.environ.get("XGRAD_IMPL")
        os.environ["XGRAD_IMPL"] = self.value

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop("XGRAD_IMPL", None)
        else:
            os.environ["XGRAD_IMPL"] = self.old


# --- part 1: predict+restore per optimizer ------------------------------------------------------


def kernel_row(name, cls, kwargs, shapes, device, repeats) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=gen).to(device).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device) * 1e-3
    plain = cls(params, foreach=True, **kwargs)
    plain.step()
    fns: dict[str, Callable[[], None]] = {"step foreach": plain.step}
    if name in HAS_FUSED_STEP:
        try:
            fused_opt = cls(params, fused=True, **kwargs)
            fused_opt.load_state_dict(plain.state_dict())
            fused_opt.step()
            fns["step fused"] = fused_opt.step
        except (RuntimeError, ValueError):
            pass
    opt = cls(params, foreach=True, **kwargs)
    opt.load_state_dict(plain.state_dict())
    predicted, first_call = {}, {}
    for which in IMPLS:
        with impl_env(which):
            before = fused.COUNTS["fused"]
            sync(device)
            start = time.perf_counter()
            xg.predict(opt, 1)
            sync(device)
            first_call[which] = time.perf_counter() - start
            predicted[which] = [p.detach().clone() for p in params]
            xg.restore(opt)
            if which == "fused" and fused.COUNTS["fused"] == before:
                first_call[which] = float("nan")  # fell back to foreach: no kernel ran

        def predict_restore(which: str = which) -> None:
            with impl_env(which):
                xg.predict(opt, 1)
                xg.restore(opt)

        fns[f"xgrad {which}"] = predict_restore
    times = timed(fns, device, repeats)  # name -> [best wall s, best CPU s]
    best = {k: wall for k, (wall, _) in times.items()}
    cpu = {k: cpu_s for k, (_, cpu_s) in times.items()}
    error = max(
        ((a.double() - b.double()).abs().max().item())
        for a, b in zip(predicted["foreach"], predicted["fused"], strict=True)
    )
    record = api._RECORDS[opt]
    return dict(
        name=name,
        ms={k: v * 1e3 for k, v in best.items()},
        cpu_ms={k: v * 1e3 for k, v in cpu.items()},
        first_fused_s=first_call["fused"],
        max_abs_diff=error,
        held=nbytes(record.buffers.values()) / nbytes(params),
    )


def kernels_table(rows: list[dict]) -> list[str]:
    lines = [
        "| optimizer | step foreach ms | step fused ms | predict+restore foreach ms "
        "| predict+restore fused ms | fused/foreach | foreach ratio to step | fused ratio to step "
        "| fused ratio to fused step | first fused call s | max abs diff | held "
        "| CPU ms: step foreach / p+r foreach / p+r fused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ms = r["ms"]
        fstep = ms.get("step fused")
        xf, xfu = ms["xgrad foreach"], ms["xgrad fused"]
        c = r["cpu_ms"]
        cpu = f"{c['step foreach']:.0f} / {c['xgrad foreach']:.0f} / {c['xgrad fused']:.0f}"
        lines.append(
            f"| {r['name']} | {ms['step foreach']:.2f} | "
            f"{'-' if fstep is None else f'{fstep:.2f}'} | {xf:.2f} | {xfu:.2f} | {xfu / xf:.2f} | "
            f"{xf / ms['step foreach']:.2f} | {xfu / ms['step foreach']:.2f} | "
            f"{'-' if fstep is None else f'{xfu / fstep:.2f}'} | {r['first_fused_s']:.1f} | "
            f"{r['max_abs_diff']:.1e} | {r['held']:.2f}x | {cpu} |"
        )
    return lines


# --- part 2: end-to-end training step -----------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet-50's block; the same CIFAR ResNet as gpu_cost.py, which needs click (the device
    tool's machine has only torch)."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnet50_cifar(layers: list[int], base: int, classes: int = 10) -> nn.Module:
    """3x3 stem, no max-pool (the paper's CIFAR-10 ResNet), Bottleneck stages."""
    mods: list[nn.Module] = [
        nn.Conv2d(3, base, 3, 1, 1, bias=False),
        nn.BatchNorm2d(base),
        nn.ReLU(),
    ]
    cin = base
    for i, count in enumerate(layers):
        for j in range(count):
            mods.append(Bottleneck(cin, base * 2**i, 2 if i and not j else 1))
            cin = 4 * base * 2**i
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*mods)


class GPT(nn.Module):
    """GPT-2-small-shaped decoder (pre-norm blocks, causal mask, tied head), no attention tricks."""

    def __init__(self, vocab: int, ctx: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(ctx, width)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )  # fmt: skip
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.size(1), device=ids.device)
        mask = nn.Transformer.generate_square_subsequent_mask(ids.size(1), device=ids.device)
        x = self.blocks(self.tok(ids) + self.pos(pos), mask=mask, is_causal=True)
        return self.head(self.norm(x))


def workloads(tiny: bool) -> list[dict]:
    r50 = [1, 1, 1, 1] if tiny else [3, 4, 6, 3]
    images = (4, 8) if tiny else (128, 64)  # batch, ResNet base width
    gpt = (2, 2, 64, 2, 97, 32) if tiny else (8, 12, 768, 12, 50257, 1024)  # batch, layers, ...

    def image_batch(device):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(images[0], 3, 32, 32, generator=gen)
        return x.to(device), torch.randint(0, 10, (images[0],), generator=gen).to(device)

    def token_batch(device):
        batch, _, _, _, vocab, ctx = gpt
        ids = torch.randint(0, vocab, (batch, ctx + 1), generator=torch.Generator().manual_seed(0))
        ids = ids.to(device)
        return ids[:, :-1], ids[:, 1:]

    def resnet():
        return resnet50_cifar(r50, images[1])

    def transformer():
        _, layers, width, heads, vocab, ctx = gpt
        return GPT(vocab, ctx, width, layers, heads)

    shape = f"32x32, batch {images[0]}"
    return [
        dict(name="ResNet-50 fp32", build=resnet, batch=image_batch, amp=None, shape=shape,
             optimizers=("SGDM", "Adam")),
        dict(name="ResNet-50 bf16 autocast", build=resnet, batch=image_batch, amp=torch.bfloat16,
             shape=shape, optimizers=("SGDM", "Adam")),
        dict(name="GPT-2-small-shaped bf16 autocast", build=transformer, batch=token_batch,
             amp=torch.bfloat16, shape=f"{gpt[1]} layers, width {gpt[2]}, ctx {gpt[5]}, "
             f"batch {gpt[0]}", optimizers=("AdamW",)),
    ]  # fmt: skip


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    cls, kwargs = {o[0]: (o[1], o[2]) for o in OPTIMIZERS}[name]
    return cls(model.parameters(), foreach=True, **kwargs)


class Trainer:
    """One model + optimizer; `impl` None is the base loop, else XGrad-S2 with that XGRAD_IMPL."""

    def __init__(self, work: dict, optimizer: str, impl: str | None, device: torch.device):
        torch.manual_seed(0)
        self.model = work["build"]().to(device)
        self.optimizer = make_optimizer(optimizer, self.model)
        self.inputs, self.targets = work["batch"](device)
        self.amp, self.impl, self.device = work["amp"], impl, device

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.optimizer.zero_grad(set_to_none=True)
            if self.impl:
                with impl_env(self.impl):
                    xg.predict(self.optimizer, s=2)
            with torch.autocast(self.device.type, self.amp, enabled=self.amp is not None):
                out = self.model(self.inputs)
                loss = F.cross_entropy(
                    out.reshape(-1, out.size(-1)).float(), self.targets.reshape(-1)
                )
            loss.backward()
            if self.impl:
                xg.restore(self.optimizer)
            self.optimizer.step()


def e2e_rows(work: dict, device: torch.device, block: int, rounds: int) -> list[dict]:
    rows = []
    for optimizer in work["optimizers"]:
        variants = {"base": None, **{f"XGrad-S2 {i}": i for i in IMPLS}}
        trainers = {k: Trainer(work, optimizer, v, device) for k, v in variants.items()}
        warm = {}
        for k, t in trainers.items():
            sync(device)
            start = time.perf_counter()
            t.steps(3)  # state, then the fused path's compile, cuDNN autotune
            sync(device)
            warm[k] = time.perf_counter() - start
        times: dict[str, list[float]] = {k: [] for k in trainers}
        names = list(trainers)
        for r in range(rounds):
            for k in names[r % len(names) :] + names[: r % len(names)]:
                sync(device)
                start = time.perf_counter()
                trainers[k].steps(block)
                sync(device)
                times[k].append((time.perf_counter() - start) / block)
        held = {}
        for k, t in trainers.items():
            record = api._RECORDS.get(t.optimizer)
            params = [p for g in t.optimizer.param_groups for p in g["params"]]
            held[k] = 0.0 if record is None else nbytes(record.buffers.values()) / nbytes(params)
        peak = {}
        if device.type == "cuda":
            for k in list(trainers):
                trainer = trainers.pop(k)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                trainer.steps(2)
                sync(device)
                peak[k] = torch.cuda.max_memory_allocated(device)
                del trainer
        base = statistics.median(times["base"])
        for k in names:
            med = statistics.median(times[k])
            rows.append(
                dict(
                    model=work["name"], shape=work["shape"], optimizer=optimizer, variant=k,
                    ms=med * 1e3, overhead=med / base - 1, warm_s=warm[k], held=held[k],
                    peak=peak.get(k), base_peak=peak.get("base"),
                )
            )  # fmt: skip
        print(rows[-3:], flush=True)
    return rows


def e2e_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | input | optimizer | variant | step ms (median) | overhead vs base "
        "| first 3 steps s | held between steps | peak memory vs base |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "not measured (CPU)"
        if r["peak"] is not None:
            peak = f"{r['peak'] / 2**20:.0f} MiB ({r['peak'] / r['base_peak'] - 1:+.1%})"
        over = "-" if r["variant"] == "base" else f"{r['overhead']:+.2%}"
        lines.append(
            f"| {r['model']} | {r['shape']} | {r['optimizer']} | {r['variant']} | {r['ms']:.1f} "
            f"| {over} | {r['warm_s']:.1f} | {r['held']:.2f}x | {peak} |"
        )
    return lines


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=("kernels", "e2e", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CI: 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6, help="e2e: rounds of blocks per variant")
    parser.add_argument("--block", type=int, default=10, help="e2e: steps per timed block")
    parser.add_argument("--only", action="append", help="optimizer names (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="small shapes: a logic check")
    parser.add_argument("--out", help="also write the Markdown to this file")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    shapes = resnet50_shapes()
    if args.tiny:
        shapes = [(8, 4, 3, 3), (8,), (8,), (10, 8)]
    lines = [
        f"# XGrad fused fast path vs foreach ({device.type})",
        "",
        f"- command: `{' '.join(['python', 'benchmarks/runtime_overhead_fused.py', *raw])}`",
        f"- torch {torch.__version__}, Python {platform.python_version()}, device: {dev}, "
        f"torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}",
    ]
    if args.part in ("kernels", "all"):
        n = sum(torch.Size(s).numel() for s in shapes)
        rows = []
        for name, cls, kwargs in OPTIMIZERS:
            if args.only and name not in args.only:
                continue
            rows.append(kernel_row(name, cls, kwargs, shapes, device, args.repeats))
            print(rows[-1], flush=True)
        lines += [
            "",
            f"## predict+restore ({'tiny shapes' if args.tiny else 'ResNet-50 shapes'}, "
            f"{n / 1e6:.2f}M fp32 in {len(shapes)} tensors; best of {args.repeats} interleaved)",
            "",
            *kernels_table(rows),
        ]
    if args.part in ("e2e", "all"):
        rows = []
        for work in workloads(args.tiny):
            rows += e2e_rows(work, device, args.block, args.rounds)
        lines += [
            "",
            f"## training step, base vs XGrad-S2 (median of {args.rounds} rounds of "
            f"{args.block} steps, variants in rotating order)",
            "",
            *e2e_table(rows),
        ]
    compiled = [
        f"- fused kernel {k.description}: first call (compile) {k.first_call_s or 0:.1f} s"
        + (f", broken: {k.broken}" if k.broken else "")
        for k in fused.kernels()
    ]
    text = "\n".join([*lines, "", *compiled]) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    return text


if __name__ == "__main__":
    main()
