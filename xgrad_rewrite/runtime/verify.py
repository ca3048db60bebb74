"""`XGRAD_VERIFY=1`: watch a run and say, with file:line, where the patch is wrong.

    XGRAD_VERIFY=1 python train.py

Findings (`Finding.kind`), each reported once per place (a `warnings.warn` at once, pointing at
that place) and listed again on stderr at exit:
- `unpredicted-forward` (a problem): a forward with gradients on read the parameters of an
  optimizer that had stepped and was not predicted, and gradients of that forward were still in
  `p.grad` at that optimizer's next step. Reported at the forward's call site (the outermost
  module call). A forward whose gradients are reset before the step (a GAN critic's forward in
  the generator's step, followed by `netD.zero_grad()`) is not one.
- `unpredicted-step` (a problem): `optimizer.step()` without `xgrad.predict(optimizer)` since the
  optimizer's previous step. The optimizer's first step is excused (predict is a no-op before the
  optimizer has state) unless the optimizer is never predicted in the whole run: that one is
  reported at exit, at the place of its first step.
- `no-grad-on-predicted` (information): a forward with gradients off (an evaluation) read the
  parameters of an optimizer between `xgrad.predict` and `xgrad.restore`, so on θ̂, not θt.

The verifier judges the calls, not the weights: `predict` counts when `XGRAD_DISABLE=1`,
`XGRAD_S=0` or `s=0` make it a no-op, so a correct patch reports nothing under those too. An
optimizer driven by the FX path (`xgrad.fx.predictive`) is predicted by its graph and never
reported. A module whose output holds no tensor that requires grad (a custom object) is not
followed for (a).

How: a global module forward pre-/post-hook pair sees every module call and attributes each
parameter to the module that owns it directly; global optimizer step pre-hooks learn every
optimizer and its parameters; `predict`/`restore` tell `watch`. For (a), a grad-mode forward
reading parameters of an unpredicted optimizer hooks the outermost module's output tensors; when
a backward passes through them, an end-of-backward callback taints each of those parameters
whose `p.grad` that backward changed. A tainted parameter keeps its taint while its `p.grad` is
the same tensor and not reset: set to None or replaced drops it, an in-place change drops it only
when it left zeros (`zero_grad(set_to_none=False)`; clipping and unscaling keep it). The step
pre-hook reports the taints still held and clears them.

API for tests and tools: `enable()`, `disable()`, `enabled()`, `report()`, `reset()`,
`summary()`, `ignore_file(path)`. Off by default and free when off: nothing is installed, and
`watch` returns at once.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import sys
import sysconfig
import threading
import warnings
import weakref
from typing import Any

import torch
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)
from torch.optim.optimizer import register_optimizer_step_pre_hook

from xgrad_rewrite.runtime.registry import unwrap

UNPREDICTED_FORWARD = "unpredicted-forward"
UNPREDICTED_STEP = "unpredicted-step"
NO_GRAD_ON_PREDICTED = "no-grad-on-predicted"
PROBLEMS = (UNPREDICTED_FORWARD, UNPREDICTED_STEP)


class XGradVerifyWarning(UserWarning):
    """A problem XGRAD_VERIFY found: an unpredicted training forward or step."""


class XGradVerifyInfo(UserWarning):
    """Information from XGRAD_VERIFY: an evaluation forward on predicted weights."""


@dataclasses.dataclass
class Finding:
    """One place where the verifier saw something; `count` is how many times it saw it."""

    kind: str
    path: str
    line: int
    optimizer: str  # the variable naming it where it steps, else its class
    message: str
    count: int = 1

    @property
    def problem(self) -> bool:
        return self.kind in PROBLEMS

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def __str__(self) -> str:
        times = f" ({self.count} times)" if self.count > 1 else ""
        return f"{_short(self.path)}:{self.line}: {self.message}{times}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"problem": self.problem}


Place = tuple[str, int]

# Where a frame's code lives: torch/xgrad (never a place), a library (a place only when nothing
# else is), or the user's code.
_OURS, _LIBRARY, _USER = 0, 1, 2
_SKIPPED_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep
    for m in (torch, sys.modules[__name__.split(".")[0]])
)
_LIBRARY_DIRS = tuple(
    {os.path.abspath(p) + os.sep for k in ("stdlib", "platstdlib") if (p := sysconfig.get_path(k))}
)
_KINDS: dict[str, int] = {}


def _kind(filename: str) -> int:
    kind = _KINDS.get(filename)
    if kind is None:
        if filename.startswith(_SKIPPED_DIRS) or filename.startswith("<frozen"):
            kind = _OURS
        elif (
            "site-packages" in filename
            or "dist-packages" in filename
            or filename.startswith(_LIBRARY_DIRS)
        ):
            kind = _LIBRARY
        else:
            kind = _USER
        _KINDS[filename] = kind
    return kind


def ignore_file(path: str) -> None:
    """Never report a place in this file, nor name an optimizer from it (a wrapper around
    `predict`, a training framework of your own): the place is found further out."""
    _KINDS[path] = _KINDS[os.path.abspath(path)] = _OURS


def _site(optimizer: torch.optim.Optimizer | None = None) -> tuple[Place, str | None]:
    """The innermost frame in the user's code (else in a library) and, when asked, the name
    that frame (or its `self`, or its globals) gives `optimizer`."""
    frame = sys._getframe(1)
    library = None
    while frame is not None:
        kind = _kind(frame.f_code.co_filename)
        if kind == _USER:
            break
        if kind == _LIBRARY and library is None:
            library = frame
        frame = frame.f_back
    frame = frame or library
    if frame is None:
        return ("<unknown>", 0), None
    name = _name_in(frame, optimizer) if optimizer is not None else None
    return (frame.f_code.co_filename, frame.f_lineno), name


def _is(value: Any, optimizer: torch.optim.Optimizer) -> bool:
    return value is optimizer or (
        isinstance(value, torch.optim.Optimizer) and unwrap(value) is optimizer
    )


def _name_in(frame: Any, optimizer: torch.optim.Optimizer) -> str | None:
    try:
        scopes = [frame.f_locals, frame.f_globals]
    except Exception:  # noqa: BLE001 - a name is a nicety
        return None
    for scope in scopes:
        for key, value in list(scope.items()):
            if _is(value, optimizer):
                return key
        owner = scope.get("self")
        attributes = getattr(owner, "__dict__", None)
        if isinstance(attributes, dict):
            for key, value in list(attributes.items()):
                if _is(value, optimizer):
                    return f"self.{key}"
    return None


def _short(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative


class _Optimizer:
    """What the verifier knows of one optimizer (holds it weakly)."""

    __slots__ = (
        "cls",
        "index",
        "name",
        "sig",
        "predicted",
        "since_step",
        "ever_predicted",
        "steps",
        "fx",
        "first_step",
        "tries",
    )

    def __init__(self, optimizer: torch.optim.Optimizer, index: int) -> None:
        self.cls = type(optimizer).__name__
        self.index = index
        self.name: str | None = None
        self.sig: list[tuple[int, int]] = []
        self.predicted = False  # between predict and restore/step
        self.since_step = False  # predict called since the previous step
        self.ever_predicted = False
        self.steps = 0
        self.fx = False  # driven by xgrad.fx.predictive
        self.first_step: Place | None = None  # its first step, when taken unpredicted
        self.tries = 0  # attempts at finding its name

    @property
    def label(self) -> str:
        return self.name or f"{self.cls} #{self.index}"


class _Taint:
    """A parameter whose `p.grad` holds gradients of an unpredicted training forward."""

    __slots__ = ("param", "owner", "places", "grad", "version")

    def __init__(self, param: weakref.ref, owner: _Optimizer) -> None:
        self.param = param
        self.owner = owner
        self.places: dict[Place, None] = {}
        self.grad: weakref.ref | None = None
        self.version = 0

    def mark(self, grad: torch.Tensor) -> None:
        self.grad = weakref.ref(grad)
        self.version = grad._version

    def holds(self, p: torch.Tensor) -> bool:
        """Whether `p.grad` still holds the tainted gradients: not None, replaced or zeroed."""
        g = p.grad
        if g is None or self.grad is None or self.grad() is not g:
            return False
        if g._version == self.version:
            return True
        try:  # changed in place since: zeroed (gone), or scaled/clipped/added to (still there)
            return bool(g.any())
        except Exception:  # noqa: BLE001 - a layout without `any`: keep it
            return True


class _Use:
    """The parameters of unpredicted optimizers one outermost training forward read."""

    __slots__ = ("watcher", "params", "place", "before")

    def __init__(self, watcher: _Watcher, params: list[torch.Tensor], place: Place) -> None:
        self.watcher = watcher
        self.params = params
        self.place = place
        self.before: list[tuple[torch.Tensor, int] | None] | None = None

    def fired(self, grad: torch.Tensor) -> None:
        """A backward reached the forward's output: note each `p.grad`, look again at the end."""
        if self.before is None:
            self.before = [None if (g := p.grad) is None else (g, g._version) for p in self.params]
            torch.autograd.Variable._execution_engine.queue_callback(self.finish)

    def finish(self) -> None:
        before, self.before = self.before, None
        if before is None or self.watcher is not _watcher:
            return
        for p, old in zip(self.params, before, strict=True):
            g = p.grad
            if g is None or (old is not None and old[0] is g and old[1] == g._version):
                continue  # this backward left p.grad alone (torch.autograd.grad, no path)
            self.watcher.taint(p, self.place)


class _Local(threading.local):
    def __init__(self) -> None:
        self.depth = 0  # module calls in progress on this thread
        self.uses: list[torch.Tensor] = []  # unpredicted params read in grad mode, this call
        self.evals: list[_Optimizer] = []  # predicted optimizers read without grad, this call


class _Watcher:
    def __init__(self, warn: bool) -> None:
        self.warn = warn
        self.local = _Local()
        self.optimizers: weakref.WeakKeyDictionary[torch.optim.Optimizer, _Optimizer] = (
            weakref.WeakKeyDictionary()
        )
        self.all: list[_Optimizer] = []
        self.owners: dict[int, tuple[weakref.ref, _Optimizer]] = {}
        self.taints: dict[int, _Taint] = {}
        self.param_hooks: dict[int, tuple[weakref.ref, list[Any]]] = {}
        self.findings: dict[tuple[str, Place, str], Finding] = {}
        self.steps = 0

    # -- optimizers ------------------------------------------------------------------------

    def optimizer(self, optimizer: torch.optim.Optimizer, learn: bool = False) -> _Optimizer:
        """Its record, created on first sight; its parameters learned then and, with `learn`
        (at each step), again when its param groups changed."""
        opt = self.optimizers.get(optimizer)
        if opt is None:
            opt = self.optimizers[optimizer] = _Optimizer(optimizer, len(self.all) + 1)
            self.all.append(opt)
        elif not learn:
            return opt
        groups = optimizer.param_groups
        sig = [(id(g["params"]), len(g["params"])) for g in groups]
        if sig != opt.sig:
            opt.sig = sig
            for group in groups:
                for p in group["params"]:
                    self.owners[id(p)] = (weakref.ref(p), opt)
        return opt

    def site(self, opt: _Optimizer, optimizer: torch.optim.Optimizer) -> Place:
        """The place of the call being watched; names the optimizer from it (a few tries)."""
        if opt.name is not None or opt.tries >= 3:
            return _site()[0]
        opt.tries += 1
        place, opt.name = _site(optimizer)
        return place

    def saw_call(self, optimizer: Any, predicted: bool) -> None:
        optimizer = unwrap(optimizer)
        if not isinstance(optimizer, torch.optim.Optimizer):
            return
        opt = self.optimizer(optimizer)
        opt.predicted = predicted
        if predicted:
            opt.since_step = opt.ever_predicted = True
            if opt.name is None and opt.tries < 3:
                self.site(opt, optimizer)

    def step_pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if unwrap(optimizer) is not optimizer:  # a wrapper's step: its optimizer's step counts
            return
        opt = self.optimizer(optimizer, learn=True)
        self.steps += 1
        place: Place | None = None
        if self.taints:
            place = self.check_taints(opt, optimizer)
        if not opt.fx and not opt.since_step:
            place = place or self.site(opt, optimizer)
            if opt.steps:
                label = opt.label
                self.found(
                    UNPREDICTED_STEP,
                    place,
                    opt,
                    f"{label}.step() without xgrad.predict({label}) since its previous step",
                )
            elif not opt.ever_predicted:
                opt.first_step = place  # excused, unless it is never predicted (see report)
        opt.steps += 1
        opt.since_step = opt.predicted = False

    def check_taints(self, opt: _Optimizer, optimizer: torch.optim.Optimizer) -> Place | None:
        """Report the forwards whose gradients reach this step; the step clears their taints."""
        places: dict[Place, None] = {}
        for key, taint in list(self.taints.items()):
            if taint.owner is not opt:
                continue
            del self.taints[key]
            p = taint.param()
            if p is not None and taint.holds(p):
                places.update(taint.places)
        if not places or opt.fx:
            return None
        place = self.site(opt, optimizer)
        label = opt.label
        for forward in places:
            self.found(
                UNPREDICTED_FORWARD,
                forward,
                opt,
                f"training forward on parameters of {label}, which is not predicted here: "
                f"call xgrad.predict({label}) before this forward (its gradients reached "
                f"{label}.step() at {_short(place[0])}:{place[1]})",
            )
        return place

    # -- forwards --------------------------------------------------------------------------

    def forward_pre(self, module: torch.nn.Module, args: Any) -> None:
        self.local.depth += 1
        forward = module.__dict__.get("forward")
        if forward is not None and type(forward).__name__ == "PredictiveForward":
            optimizer = getattr(forward, "optimizer", None)
            if isinstance(optimizer, torch.optim.Optimizer):
                self.optimizer(optimizer).fx = True

    def forward_post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        local = self.local
        local.depth -= 1
        params = module._parameters
        if params:
            grad = torch.is_grad_enabled()
            owners = self.owners
            for p in params.values():
                if p is None:
                    continue
                entry = owners.get(id(p))
                if entry is None or entry[0]() is not p:
                    continue
                opt = entry[1]
                if opt.predicted:
                    if not grad:
                        local.evals.append(opt)
                elif grad and opt.steps and not opt.fx and p.requires_grad:
                    local.uses.append(p)
        if local.depth <= 0:
            local.depth = 0
            if local.uses or local.evals:
                self.outermost_done(output)

    def outermost_done(self, output: Any) -> None:
        local = self.local
        uses, evals = local.uses, local.evals
        local.uses, local.evals = [], []
        tensors = _grad_tensors(output, [], 0) if uses else []
        if not (tensors or evals):
            return
        place, _ = _site()
        for opt in dict.fromkeys(evals):
            label = opt.label
            self.found(
                NO_GRAD_ON_PREDICTED,
                place,
                opt,
                f"forward without gradients on the predicted weights θ̂ of {label} (between "
                f"xgrad.predict({label}) and xgrad.restore({label})): it sees θ̂, not θt",
            )
        if tensors:
            use = _Use(self, list({id(p): p for p in uses}.values()), place)
            for t in tensors:
                try:
                    t.register_hook(use.fired)
                except RuntimeError:  # a tensor that takes no hooks: not followed
                    pass

    # -- gradients -------------------------------------------------------------------------

    def taint(self, p: torch.Tensor, place: Place) -> None:
        entry = self.owners.get(id(p))
        if entry is None or entry[0]() is not p or p.grad is None:
            return
        taint = self.taints.get(id(p))
        if taint is None or taint.param() is not p:
            taint = self.taints[id(p)] = _Taint(entry[0], entry[1])
            self.follow(p, entry[0])
        taint.places[place] = None
        taint.mark(p.grad)

    def follow(self, p: torch.Tensor, ref: weakref.ref) -> None:
        """Hooks on a tainted parameter (once): before each accumulation, drop a taint whose
        gradients were reset; after it, note the new `p.grad`."""
        known = self.param_hooks.get(id(p))
        if known is not None and known[0]() is p:
            return
        taints = self.taints

        def before(grad: torch.Tensor) -> None:
            param = ref()
            taint = taints.get(id(param))
            if taint is not None and taint.param() is param and not taint.holds(param):
                del taints[id(param)]

        def after(param: torch.Tensor) -> None:
            taint = taints.get(id(param))
            if taint is not None and taint.param() is param and param.grad is not None:
                taint.mark(param.grad)

        handles = [p.register_hook(before), p.register_post_accumulate_grad_hook(after)]
        self.param_hooks[id(p)] = (ref, handles)

    # -- findings --------------------------------------------------------------------------

    def found(self, kind: str, place: Place, opt: _Optimizer, message: str) -> None:
        key = (kind, place, opt.label)
        finding = self.findings.get(key)
        if finding is not None:
            finding.count += 1
            return
        finding = self.findings[key] = Finding(kind, place[0], place[1], opt.label, message)
        if self.warn:
            category = XGradVerifyWarning if finding.problem else XGradVerifyInfo
            warnings.warn_explicit(f"xgrad verify: {message}", category, place[0], place[1])

    def close(self) -> None:
        for ref, handles in self.param_hooks.values():
            if ref() is not None:
                for handle in handles:
                    handle.remove()
        self.param_hooks.clear()
        self.taints.clear()


def _grad_tensors(value: Any, out: list[torch.Tensor], depth: int) -> list[torch.Tensor]:
    """The tensors that require grad in a module's output (tuples, lists, dicts, dataclasses)."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad and len(out) < 16:
            out.append(value)
    elif depth < 3:
        if isinstance(value, (tuple, list)):
            items: Any = value
        elif isinstance(value, dict):
            items = value.values()
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            items = [getattr(value, f.name, None) for f in dataclasses.fields(value)]
        else:
            return out
        for item in items:
            _grad_tensors(item, out, depth + 1)
    return out


_watcher: _Watcher | None = None
_handles: list[Any] = []
_summary_at_exit = False


def watch(optimizer: Any, predicted: bool) -> None:
    """`predict` (True) and `restore` (False) call this; it returns at once when off."""
    if _watcher is not None:
        _watcher.saw_call(optimizer, predicted)


def enabled() -> bool:
    return _watcher is not None


def enable(*, warn: bool = True, summary: bool = False) -> None:
    """Start watching (what `XGRAD_VERIFY=1` does at import, with `summary=True`).

    `warn`: a `warnings.warn` at the place of each new finding (`XGradVerifyWarning` for a
    problem, `XGradVerifyInfo` for information). `summary`: print `report()` to stderr at exit.
    Already on: only the two flags change.
    """
    global _watcher, _summary_at_exit
    if summary and not _summary_at_exit:
        atexit.register(_print_summary)
    _summary_at_exit = _summary_at_exit or summary
    if _watcher is not None:
        _watcher.warn = warn
        return
    watcher = _Watcher(warn)
    _handles.extend(
        [
            register_module_forward_pre_hook(watcher.forward_pre),
            register_module_forward_hook(watcher.forward_post, always_call=True),
            register_optimizer_step_pre_hook(watcher.step_pre),
        ]
    )
    _watcher = watcher


def disable() -> None:
    """Stop watching: every hook removed, the findings dropped."""
    global _watcher
    watcher, _watcher = _watcher, None
    while _handles:
        _handles.pop().remove()
    if watcher is not None:
        watcher.close()


def reset() -> None:
    """Forget everything seen so far (the harness calls it between scripts); stays on."""
    if _watcher is not None:
        warn = _watcher.warn
        disable()
        enable(warn=warn)


def report() -> list[Finding]:
    """Every finding so far, in the order found; an optimizer that took steps and was never
    predicted is reported at its first step."""
    watcher = _watcher
    if watcher is None:
        return []
    findings = {key: dataclasses.replace(f) for key, f in watcher.findings.items()}
    for opt in watcher.all:
        if opt.first_step is None or opt.ever_predicted or opt.fx:
            continue
        key = (UNPREDICTED_STEP, opt.first_step, opt.label)
        if key in findings:
            findings[key].count += 1
        else:
            label = opt.label
            findings[key] = Finding(
                UNPREDICTED_STEP,
                *opt.first_step,
                label,
                f"{label} steps but is never predicted (no xgrad.predict({label}) in the run)",
            )
    return list(findings.values())


def summary() -> str:
    """`report()` as the text printed at exit."""
    findings = report()
    watcher = _watcher
    optimizers = len(watcher.all) if watcher is not None else 0
    steps = watcher.steps if watcher is not None else 0
    problems = sum(f.problem for f in findings)
    notes = len(findings) - problems
    seen = f"{optimizers} optimizer(s), {steps} step(s) watched"
    if not findings:
        head = "no problems found" if steps else "no optimizer step was seen"
        return f"xgrad verify: {head} ({seen})"
    lines = [f"xgrad verify: {problems} problem(s), {notes} note(s) ({seen})"]
    for f in sorted(findings, key=lambda f: not f.problem):
        lines.append(f"  {'problem' if f.problem else 'note'}: {f}")
    return "\n".join(lines)


def _print_summary() -> None:
    if _watcher is None:
        return
    prefix = ""
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        prefix = f"[rank {dist.get_rank()}] "
    print(prefix + summary(), file=sys.stderr, flush=True)


def _env_on() -> bool:
    return os.environ.get("XGRAD_VERIFY", "").strip() not in ("", "0")


if _env_on():
    enable(warn=True, summary=True)
