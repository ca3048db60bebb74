"""Rules per optimizer class, looked up along the MRO; wrappers unwrapped to the torch optimizer.

The one place that maps classes to rules: it starts from `rules.table.builtin()` (torch's
classes), adds a user's `register(cls, rule)`, and, the first time it sees a class from a
package in `rules.thirdparty.PACKAGES`, that package's `rules.thirdparty.entries(package)`.
The rules modules themselves know nothing of it.
"""

from __future__ import annotations

from typing import Any

import torch

from xgrad_rewrite.runtime.rules import table, thirdparty
from xgrad_rewrite.runtime.rules.base import DeltaFn, Rule

_RULES: dict[type, Rule] = dict(table.builtin())

_CLOSURE_DRIVEN = (torch.optim.LBFGS,)


def register(cls: type, rule: Rule | DeltaFn) -> None:
    """Use `rule` for `cls` and its subclasses (a plain `delta(batch)` function is wrapped)."""
    if not isinstance(cls, type):
        raise TypeError(f"register() needs an optimizer class, got {cls!r}")
    _RULES[cls] = rule if isinstance(rule, Rule) else Rule(delta=rule, name=cls.__name__)


def register_builtin() -> None:
    """Put the built-in rules back (tests call it to undo their own `register` calls)."""
    _RULES.update(table.builtin())


def unwrap(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate/Lightning-style wrappers (`.optimizer` attribute).

    accelerate's `AcceleratedOptimizer` subclasses `torch.optim.Optimizer` itself, so the loop
    follows `.optimizer` whatever the wrapper's own type, down to the innermost optimizer.
    """
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            break
        if (
            not isinstance(inner, torch.optim.Optimizer)
            and getattr(inner, "optimizer", None) is None
        ):
            break
        optimizer = inner
    return optimizer


def _how_to_register(name: str) -> str:
    return (
        "Register a rule for it: `xgrad_rewrite.runtime.register("
        f"{name}, rule)` where `rule(batch)` returns a Delta (see xgrad_rewrite.runtime.rules)."
    )


def rule_for(optimizer: Any) -> Rule:
    """The rule of the nearest class on the optimizer's MRO, or a TypeError saying how to add it."""
    cls = type(optimizer)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"xgrad: {name} is not a torch.optim.Optimizer (nor a wrapper with an `.optimizer` "
            "that is one)."
        )
    if isinstance(optimizer, _CLOSURE_DRIVEN) and cls not in _RULES:
        raise TypeError(
            f"xgrad: {name} is closure-driven (it re-evaluates the loss inside step()), so "
            "there is no single forward to run on predicted weights; XGrad does not support it. "
            + _how_to_register(cls.__qualname__)
        )
    _register_third_party(cls)
    for klass in cls.__mro__:
        rule = _RULES.get(klass)
        if rule is not None:
            return rule
    raise TypeError(
        f"xgrad: no weight-prediction rule for {name}. "
        + _how_to_register(cls.__qualname__)
        + " Supported: "
        + ", ".join(supported())
        + "."
    )


_THIRD_PARTY_DONE: set[str] = set()


def _register_third_party(cls: type) -> None:
    """Add the entries for lion_pytorch / timm / transformers / bitsandbytes on first sight.

    Only an optimizer from one of those packages triggers it, so `import xgrad_rewrite.runtime`
    never imports them. A rule the user registered for the same class is kept.
    """
    for klass in cls.__mro__:
        package = klass.__module__.partition(".")[0]
        if package in _THIRD_PARTY_DONE or package in ("torch", "builtins"):
            continue
        if package in thirdparty.PACKAGES:
            _THIRD_PARTY_DONE.add(package)
            for third_party_cls, rule in thirdparty.entries(package):
                _RULES.setdefault(third_party_cls, rule)


def supported() -> list[str]:
    """The optimizer classes with a rule now, then the third-party ones supported once installed."""
    names = set()
    for cls in _RULES:
        public = getattr(torch.optim, cls.__name__, None) is cls
        names.add(
            f"torch.optim.{cls.__name__}" if public else f"{cls.__module__}.{cls.__qualname__}"
        )
    extra = [n for n in thirdparty.SUPPORTED if n not in names]
    return sorted(names) + [f"{n} (when installed)" for n in extra]
