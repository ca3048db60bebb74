"""Fused predict: θ̂ and the stash written in one pass over memory, by a kernel compiled per rule.

The foreach engine runs a rule's ops one by one (√v into a new tensor, + ε, copy θt into the
stash, addcdiv into θ): each op is a pass over memory. Here the rule's `delta(batch)` runs once
per predict on placeholders (`_Ph`, own `__torch_function__`): its `torch._foreach_*` ops are
recorded as a small program instead of being run, and every Python scalar (bias corrections, ε,
lr·s) becomes data. The program plus the apply (stash copy, decay, addcdiv) is compiled with
`torch.compile` (inductor: horizontally fused foreach kernels on CUDA, OpenMP C++ on CPU) once per
(program, device, dtype, shapes) and called with this step's scalars, so no step recompiles and
the rules stay stated once. Restore is the engine's copy (bit-exact).

Fallback to the foreach engine, per batch, whenever the fused path is not sure: no
`torch.compile` or compiler (`available`), a dtype other than fp16/bf16/fp32/fp64, a sparse,
complex or subclassed tensor (DTensor), a rule that does something the capture does not model
(`_Unfusable`), a compile error, or too many kernels. `XGRAD_IMPL=foreach|fused|auto` (read at
every predict) forces one path; `auto` uses the fused path where it measured faster (see
`AUTO_DEVICES` and README.md, "Fast path") and only for batches of at least `AUTO_MIN_NUMEL`
elements, where the one-off compile pays for itself.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from xgrad_rewrite.runtime import engine
from xgrad_rewrite.runtime.rules.base import Batch, Delta, Rule

log = logging.getLogger(__name__)

IMPLS = ("auto", "foreach", "fused")
AUTO_DEVICES = frozenset({"cuda"})  # CPU: faster per step, but compiles take 30-200 s
AUTO_MIN_NUMEL = 1 << 20  # below ~1M elements a compile (seconds) never pays for itself
MAX_KERNELS = 32  # distinct compiled programs per process; beyond, new ones use foreach
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def torch_compile(fn: Callable) -> Callable:
    """torch.compile for a kernel: one graph, static shapes, no per-input size asserts.

    Dynamo's guards already check every input's size and stride; inductor's own asserts would
    add ~4 µs per tensor per call (161 params x 4 lists: ~1 ms of CPU time, measured here).
    """
    import torch._inductor.config as inductor_config

    options = {"size_asserts": False} if hasattr(inductor_config, "size_asserts") else {}
    return torch.compile(fn, fullgraph=True, dynamic=False, options=options)


# Compiles the kernel; tests swap in `lambda fn: fn` to run the same program uncompiled.
compile_fn: Callable[[Callable], Callable] = torch_compile


def impl() -> str:
    """The implementation asked for by `XGRAD_IMPL` (default auto)."""
    value = os.environ.get("XGRAD_IMPL", "").strip().lower() or "auto"
    if value not in IMPLS:
        raise ValueError(f"XGRAD_IMPL must be one of {', '.join(IMPLS)}, got {value!r}")
    return value


@functools.cache
def available(device_type: str) -> bool:
    """Whether torch.compile can build a kernel for this device type here."""
    if not hasattr(torch, "compile"):
        return False
    if device_type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:
            return False
        return bool(has_triton())
    if device_type == "cpu":
        import torch._inductor.config as inductor_config

        cxx = inductor_config.cpp.cxx
        names = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c]
        return any(shutil.which(c) for c in names or ["g++"])
    return False


# ---------------------------------------------------------------- capture ---------------------


class _Unfusable(Exception):
    """The rule did something the capture does not model: run it on the foreach engine."""


class _UnfusableAttribute(_Unfusable, AttributeError):
    pass


class _Ph:
    """Placeholder for one tensor of a list: an input (`real` set) or a recorded node's output."""

    __slots__ = ("ref", "i", "real")

    def __init__(self, ref: tuple, i: int, real: Tensor | None = None) -> None:
        self.ref, self.i, self.real = ref, i, real

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        rec = getattr(_ACTIVE, "capture", None)
        if rec is None:
            return NotImplemented
        return rec.handle(func, args, kwargs or {})

    def __getattr__(self, name: str) -> Any:
        raise _UnfusableAttribute(f"rule reads .{name} of a tensor")


_BINARY = ("self", "other", "alpha")
_TERNARY = ("self", "tensor1", "tensor2", "value")
_SIGNATURES = {
    "sqrt": ("self",),
    "neg": ("self",),
    "add": _BINARY,
    "sub": _BINARY,
    "mul": ("self", "other"),
    "div": ("self", "other"),
    "addcmul": _TERNARY,
    "addcdiv": _TERNARY,
}
_KWARG_ALIASES = {"scalar": "other", "scalars": "value"}


_ACTIVE = threading.local()  # the capture running in this thread, if any


class _Capture:
    """Records `torch._foreach_*` ops over placeholder lists as (op, operand refs).

    Only calls with a placeholder among their arguments reach it (through `_Ph.__torch_function__`),
    so the rule's own scalar work on real tensors (`float(step)`) runs at full speed.
    """

    def __init__(self, n: int, device: torch.device) -> None:
        self.n, self.device = n, device
        self.ops: list[tuple[str, tuple]] = []
        self.scalars: list[list[float]] = []
        self.inputs: list[list[Tensor]] = []
        self.sources: dict[str, int] = {}

    def handle(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        name = getattr(func, "__name__", "")
        base = name.removeprefix("_foreach_").rstrip("_")
        if name.startswith("_foreach_") and base in _SIGNATURES:
            return self._record(base, name.endswith("_"), args, kwargs)
        raise _Unfusable(f"rule calls {name} on a tensor of the batch")

    def _record(self, base: str, inplace: bool, args: tuple, kwargs: dict) -> Any:
        names = _SIGNATURES[base]
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            key = _KWARG_ALIASES.get(key, key)
            if key not in names or key in values:
                raise _Unfusable(f"_foreach_{base} with {key}=")
            values[key] = value
        if values.get("alpha", None) == 1:
            del values["alpha"]
        operands = tuple(self._operand(values.get(key)) for key in names)
        if inplace and operands[0][0] != "node":
            raise _Unfusable("rule writes into an input (optimizer state or weights)")
        k = len(self.ops)
        self.ops.append((base, operands))
        ref = ("node", k)  # one tuple shared by the list's placeholders: `is` compares them
        if inplace:  # the same list object now names the new node
            for ph in args[0]:
                ph.ref = ref
            return args[0]
        return [_Ph(ref, i) for i in range(self.n)]

    def _operand(self, x: Any) -> tuple | None:
        if x is None:
            return None
        if isinstance(x, bool):
            raise _Unfusable("boolean operand")
        if isinstance(x, int | float):
            return self._slot([float(x)] * self.n)
        if isinstance(x, Tensor) and x.dim() == 0 and not x.is_complex():
            return self._slot([float(x)] * self.n)
        if not isinstance(x, list | tuple) or len(x) != self.n:
            raise _Unfusable(f"operand {type(x).__name__}")
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
            return self._slot([float(v) for v in x])
        return self._list_ref(x)

    def _slot(self, values: list[float]) -> tuple:
        self.scalars.append(values)
        return ("s", len(self.scalars) - 1)

    def _list_ref(self, xs: list | tuple) -> tuple:
        first = xs[0]
        if not isinstance(first, _Ph):
            raise _Unfusable("list of tensors from outside the batch")
        ref = first.ref
        if not all(type(ph) is _Ph and ph.ref is ref and ph.i == i for i, ph in enumerate(xs)):
            raise _Unfusable("list mixes tensors of several sources or reorders them")
        if ref[0] == "node":
            return ref
        j = self.sources.get(ref[1])
        if j is None:
            real = [ph.real for ph in xs]
            if any(
                type(t) not in _PLAIN or t.layout != torch.strided or t.device != self.device
                for t in real
            ):
                raise _Unfusable(f"{ref[1]}: a sparse, subclassed or offloaded tensor")
            j = self.sources[ref[1]] = len(self.inputs)
            self.inputs.append(real)
        return ("in", j)


class _StateView(dict):
    """A parameter's state as a rule sees it in a capture: param-shaped tensors as placeholders.

    Made on lookup, so only the keys the rule reads cost anything. 0-dim tensors such as `step`
    or NAdam's `mu_product` stay real: rules read them as floats.
    """

    __slots__ = ("i", "shape")

    def __init__(self, state: dict, i: int, shape: torch.Size) -> None:
        super().__init__(state)
        self.i, self.shape = i, shape

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Tensor) and key != "step" and value.shape == self.shape:
            ref = _STATE_REFS.get(key) or _STATE_REFS.setdefault(key, ("in", "state:" + key))
            return _Ph(ref, self.i, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def values(self):  # noqa: ANN201 - a rule iterating a state reads every tensor of it
        return [self[key] for key in self]

    def items(self):  # noqa: ANN201
        return [(key, self[key]) for key in self]


_STATE_REFS: dict[str, tuple] = {}  # one ref per state key, so `_list_ref` compares by identity


class _PlaceholderBatch(Batch):
    """The batch as a rule sees it in a capture: params, θ and g_t lists of placeholders, made
    only if the rule reads them (most read only the state)."""

    def __init__(self, batch: Batch) -> None:  # noqa: D107 - Batch's fields, some lazy
        self._real = batch
        self.states = [
            _StateView(st, i, p.shape)
            for i, (p, st) in enumerate(zip(batch.params, batch.states, strict=True))
        ]
        self.group = batch.group

    @staticmethod
    def _source(name: str, tensors: list[Tensor]) -> list[_Ph]:
        ref = ("in", name)
        return [_Ph(ref, i, t) for i, t in enumerate(tensors)]

    @functools.cached_property
    def params(self) -> list[_Ph]:  # type: ignore[override]
        return self._source("params", self._real.params)

    @functools.cached_property
    def theta(self) -> list[_Ph]:  # type: ignore[override]
        return self._source("theta", self._real.theta)

    @functools.cached_property
    def grads(self) -> list[_Ph] | None:  # type: ignore[override]
        grads = self._real.grads
        return None if grads is None else self._source("grads", grads)


def _placeholders(batch: Batch) -> Batch:
    """The batch with every param-shaped tensor replaced by an input placeholder."""
    return _PlaceholderBatch(batch)


@dataclass
class Captured(Delta):
    """A Delta whose num/den are refs into a recorded program (the rule's ops, not yet run)."""

    rule: Rule | None = None
    batch: Batch | None = None
    ops: tuple = ()
    inputs: list[list[Tensor]] = field(default_factory=list)
    scalars: list[list[float]] = field(default_factory=list)

    def eager(self) -> Delta:
        """The rule run for real (foreach), for when the kernel cannot be used."""
        assert self.rule is not None and self.batch is not None
        return self.rule.delta(self.batch)


def capture(rule: Rule, batch: Batch) -> Captured:
    """Run `rule.delta` on placeholders; raise `_Unfusable` if it leaves the modelled ops."""
    n = len(batch.params)
    rec = _Capture(n, batch.params[0].device)
    _ACTIVE.capture = rec
    try:
        delta = rule.delta(_placeholders(batch))
        num = rec._list_ref(delta.num)
        den = None if delta.den is None else rec._list_ref(delta.den)
    except _Unfusable:
        raise
    except Exception as error:  # e.g. indexing a placeholder, float() of one
        raise _Unfusable(f"{type(error).__name__}: {error}") from error
    finally:
        _ACTIVE.capture = None
    if isinstance(delta.scale, list):
        scale = [float(c) for c in delta.scale]
    else:
        scale = [float(delta.scale)] * n
    return Captured(
        num=num,
        den=den,
        scale=scale,
        decay=float(delta.decay),
        rule=rule,
        batch=batch,
        ops=tuple(rec.ops),
        inputs=rec.inputs,
        scalars=rec.scalars,
    )


# ---------------------------------------------------------------- kernel ----------------------


def _get(ref: tuple, inputs: list, nodes: list, cols: list) -> Any:
    kind, j = ref
    return inputs[j] if kind == "in" else nodes[j] if kind == "node" else cols[j]


def _run_op(op: str, a: Any, b: Any = None, c: Any = None, d: Any = None) -> list[Tensor]:
    """One recorded op over lists; scalars arrive as lists of 0-dim tensors."""
    f = torch
    if op == "sqrt":
        return f._foreach_sqrt(a)
    if op == "neg":
        return f._foreach_neg(a)
    if op in ("add", "sub"):
        other = b if c is None else f._foreach_mul(b, c)
        return f._foreach_add(a, other) if op == "add" else f._foreach_sub(a, other)
    if op == "mul":
        return f._foreach_mul(a, b)
    if op == "div":
        return f._foreach_div(a, b)
    prod = f._foreach_mul(b, c) if op == "addcmul" else f._foreach_div(b, c)
    return f._foreach_add(a, prod if d is None else f._foreach_mul(prod, d))


def _kernel(theta, stash, inputs, table, *, ops, num, den, decay):
    """Stash θt and write θ̂ = θt·(1 − coef·λ) − coef·scale·num/den; table rows are scalars."""
    cols = list(table.unbind(0))
    cols = [list(row.unbind(0)) for row in cols]
    nodes: list = []
    for op, operands in ops:
        nodes.append(
            _run_op(op, *[None if r is None else _get(r, inputs, nodes, cols) for r in operands])
        )
    d = _get(num, inputs, nodes, cols)
    if den is not None:
        d = torch._foreach_div(d, _get(den, inputs, nodes, cols))
    step = torch._foreach_mul(d, cols[-1])
    torch._foreach_copy_(stash, theta)
    if decay:
        torch._foreach_mul_(theta, cols[-2])
    torch._foreach_add_(theta, step)


@dataclass
class KernelInfo:
    """A compiled program and what its first call cost (compile + run), for the benchmarks."""

    fn: Callable | None
    description: str
    first_call_s: float | None = None
    broken: str | None = None


_KERNELS: dict[tuple, KernelInfo] = {}
COUNTS = {"fused": 0, "foreach": 0}  # batches predicted by each path in this process


def kernels() -> list[KernelInfo]:
    """Every program compiled in this process, with its first-call (compile) time."""
    return list(_KERNELS.values())


def _key(delta: Captured, params: list[Tensor]) -> tuple:
    p = params[0]
    shapes = tuple(tuple(t.shape) for t in params)
    return (
        delta.ops,
        delta.num,
        delta.den,
        bool(delta.decay),
        tuple(inp[0].dtype for inp in delta.inputs),  # states may differ from the params' dtype
        p.device,
        p.dtype,
        shapes,
    )


def _build(key: tuple, rule_name: str) -> KernelInfo:
    """A fresh code object per program, so each gets its own torch.compile cache entry."""
    ops, num, den, decay = key[:4]
    n = len(_KERNELS)
    code = _kernel.__code__.replace(co_name=f"xgrad_fused_{n}")
    fn = types.FunctionType(code, _kernel.__globals__, code.co_name, None, None)
    fn.__kwdefaults__ = dict(ops=ops, num=num, den=den, decay=decay)
    device, dtype, shapes = key[5], key[6], key[7]
    description = (
        f"{rule_name or 'rule'} {device.type} {str(dtype).removeprefix('torch.')} x{len(shapes)}"
    )
    return KernelInfo(fn=compile_fn(fn), description=description)


# ---------------------------------------------------------------- engine back end -------------


def _wanted(batch: Batch, mode: str) -> bool:
    params = batch.params
    p = params[0]
    if mode == "auto" and (
        p.device.type not in AUTO_DEVICES or sum(t.numel() for t in params) < AUTO_MIN_NUMEL
    ):
        return False
    if p.dtype not in DTYPES or not available(p.device.type):
        return False
    if torch.compiler.is_compiling():  # predict traced inside the user's compiled step
        return False
    # The params decide: FSDP2's DTensor states come with DTensor params, and state tensors are
    # only ever read through the capture, which refuses anything but plain elementwise ops.
    return all(type(t) in _PLAIN and t.layout == torch.strided for t in params)


_PLAIN = (Tensor, torch.nn.Parameter)


def _capturing(rule: Rule, mode: str) -> Rule:
    def delta(batch: Batch) -> Delta:
        if _wanted(batch, mode):
            try:
                return capture(rule, batch)
            except _Unfusable as why:
                log.debug("xgrad fused: %s runs on foreach: %s", rule.name, why)
        return rule.delta(batch)

    return dataclasses.replace(rule, delta=delta)  # the rule's other facts unchanged


def _stash_like(record: engine.Record, params: list[Tensor]) -> list[Tensor]:
    """The stash buffers, kept between steps in `record.buffers` (as the foreach engine does)."""
    store = record.buffers
    out = []
    for p in params:
        buf = store.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = store[p] = torch.empty_like(p, memory_format=torch.preserve_format)
        out.append(buf)
    return out


def _table(delta: Captured, coef: float, p: Tensor) -> Tensor:
    """This step's scalars as one (slots, n) tensor: rule slots, 1 − coef·λ, −coef·scale."""
    rows = list(delta.scalars)
    if delta.decay:
        rows.append([1.0 - coef * delta.decay] * len(delta.scale))
    rows.append([-coef * c for c in delta.scale])
    opmath = torch.float64 if p.dtype == torch.float64 else torch.float32
    table = torch.tensor(rows, dtype=opmath)
    return table.to(p.device, non_blocking=True) if p.device.type != "cpu" else table


def apply(batch: Batch, delta: Delta, coef: float, record: engine.Record) -> None:
    """`engine.apply`'s contract (stash θt, write θ̂ in place), by one compiled kernel if it can."""
    if isinstance(delta, Captured):
        if _fused_apply(batch, delta, coef, record):
            COUNTS["fused"] += 1
            return
        delta = delta.eager()
    COUNTS["foreach"] += 1
    engine.apply(batch, delta, coef, record)


def _fused_apply(batch: Batch, delta: Captured, coef: float, record: engine.Record) -> bool:
    """Run the compiled kernel; False, with nothing changed, where it cannot be used."""
    params = batch.params
    key = _key(delta, params)
    info = _KERNELS.get(key)
    if info is None:
        if len(_KERNELS) >= MAX_KERNELS:
            return False
        info = _KERNELS[key] = _build(key, delta.rule.name if delta.rule else "")
    if info.broken:
        return False
    stash = _stash_like(record, params)
    table = _table(delta, coef, params[0])
    if info.first_call_s is None:  # compiles now; θ is saved first so a failure changes nothing
        torch._foreach_copy_(stash, params)
        start = time.perf_counter()
        try:
            info.fn(params, stash, delta.inputs, table)
        except Exception as error:  # any compiler failure means: use foreach
            torch._foreach_copy_(params, stash)
            info.broken = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
            warnings.warn(
                f"xgrad: fused predict unavailable for {info.description} ({info.broken}); "
                "using the foreach path",
                RuntimeWarning,
                stacklevel=5,
            )
            return False
        if params[0].device.type == "cuda":
            torch.cuda.synchronize(params[0].device)
        info.first_call_s = time.perf_counter() - start
        log.info("xgrad fused: compiled %s in %.1f s", info.description, info.first_call_s)
    else:
        info.fn(params, stash, delta.inputs, table)
    assert record.stash is not None
    record.stash.append((params, stash))
    return True


def backend(rule: Rule) -> tuple[Rule, Callable[[Batch, Delta, float, engine.Record], None]]:
    """(rule to compute with, apply) for this predict, after `XGRAD_IMPL`."""
    mode = impl()
    if mode == "foreach":
        return rule, engine.apply
    return _capturing(rule, mode), apply
