"""The built-in table: which rule each torch.optim class (and xgrad's AdaBelief, AdaM3) uses.

Data only: `builtin()` returns (class, rule) pairs and registers nothing. The registry starts
from it, and `registry.register_builtin()` writes it back over a user's `register` calls.
Optimizers outside torch have their own entries, read lazily: see `thirdparty.entries`.
"""

from __future__ import annotations

import torch

from xgrad_rewrite.optim import AdaBelief, AdaM3
from xgrad_rewrite.runtime.rules import (
    adabelief,
    adadelta,
    adafactor,
    adagrad,
    adam,
    asgd,
    muon,
    rmsprop,
    rprop,
    sgd,
    sparse_adam,
)
from xgrad_rewrite.runtime.rules.base import Rule


def builtin() -> list[tuple[type, Rule]]:
    """(optimizer class, rule) for every class with a built-in rule in this torch."""
    entries: list[tuple[type, Rule]] = [
        (torch.optim.SGD, sgd.RULE),
        (torch.optim.RMSprop, rmsprop.RULE),
        (torch.optim.Adam, adam.ADAM),
        (torch.optim.AdamW, adam.ADAM),  # drops the decoupled decay (eq. 20)
        (torch.optim.Adamax, adam.ADAMAX),
        (torch.optim.NAdam, adam.NADAM),
        (torch.optim.RAdam, adam.RADAM),
        (torch.optim.Adagrad, adagrad.RULE),
        (AdaBelief, adabelief.ADABELIEF),
        (AdaM3, adabelief.ADAM3),
        (torch.optim.Adadelta, adadelta.RULE),
        (torch.optim.ASGD, asgd.RULE),
        (torch.optim.Rprop, rprop.RULE),
        (torch.optim.SparseAdam, sparse_adam.RULE),
    ]
    for name, rule in (("Adafactor", adafactor.RULE), ("Muon", muon.RULE)):  # newer torch only
        if hasattr(torch.optim, name):
            entries.append((getattr(torch.optim, name), rule))
    return entries
