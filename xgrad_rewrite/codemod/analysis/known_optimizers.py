"""Which optimizer classes the runtime has an XGrad rule for, by class name.

The codemod never imports torch, so it cannot ask the runtime's registry; this static list mirrors
it. Only a class the codemod resolves statically to ``torch.optim.<Name>`` or
``xgrad_rewrite.optim.<Name>`` is checked against it; a name it cannot resolve does not count.
"""

from __future__ import annotations

SUPPORTED: frozenset[str] = frozenset(
    {
        "SGD",
        "Adam",
        "AdamW",
        "Adamax",
        "NAdam",
        "RAdam",
        "Adagrad",
        "RMSprop",
        "Adadelta",
        "ASGD",
        "Rprop",
        "Adafactor",
        "Muon",
        "SparseAdam",
        "AdaBelief",
        "AdaM3",
    }
)

# Third-party classes the runtime has a rule for (loaded lazily there), by qualified name.
THIRD_PARTY: frozenset[str] = frozenset(
    {
        "lion_pytorch.Lion",
        "transformers.Adafactor",
        "transformers.optimization.Adafactor",
        *(f"timm.optim.{n}" for n in ("Lion", "NAdamW", "LaProp", "Adan", "Lamb", "AdamP")),
        *(
            f"bitsandbytes.optim.{paged}{name}{bits}"
            for paged in ("", "Paged")
            for name in ("Adam", "AdamW")
            for bits in ("", "8bit", "32bit")
        ),
        *(f"bitsandbytes.optim.{n}" for n in ("Adam8bit", "AdamW8bit")),
    }
)
# Third-party optimizer packages the runtime has no rule for: their classes are optimizers (so
# never taken for a scheduler by their name, `AdamWScheduleFree`) that the codemod leaves alone.
UNSUPPORTED_MODULES: tuple[str, ...] = ("schedulefree.",)
# Modules whose classes are optimizers (checked against SUPPORTED) ...
OPTIMIZER_MODULES: tuple[str, ...] = ("torch.optim.", "xgrad_rewrite.optim.")
# ... except these submodules, which hold schedulers and averaging helpers, not optimizers.
NOT_OPTIMIZER_MODULES: tuple[str, ...] = (
    "torch.optim.lr_scheduler.",
    "torch.optim.swa_utils.",
    "torch.optim.Optimizer",
)
# Calls whose result is certainly not an optimizer, whatever it is later called.
NOT_OPTIMIZER_CALLS: frozenset[str] = frozenset(
    {
        "torch.amp.GradScaler",
        "torch.cuda.amp.GradScaler",
        "torch.GradScaler",
        "torch.amp.grad_scaler.GradScaler",
        "argparse.ArgumentParser",
        "gym.make",
        "gymnasium.make",
    }
)
GRAD_SCALERS: frozenset[str] = frozenset(
    {
        "torch.amp.GradScaler",
        "torch.cuda.amp.GradScaler",
        "torch.GradScaler",
        "torch.amp.grad_scaler.GradScaler",
    }
)


def optimizer_class(qualified_name: str) -> str | None:
    """``torch.optim.AdamW`` -> ``AdamW`` (a third-party class keeps its qualified name);
    ``None`` when the name is not an optimizer class."""
    if qualified_name in THIRD_PARTY or qualified_name.startswith(UNSUPPORTED_MODULES):
        return qualified_name
    if qualified_name.startswith(NOT_OPTIMIZER_MODULES):
        return None
    for prefix in OPTIMIZER_MODULES:
        if qualified_name.startswith(prefix):
            rest = qualified_name[len(prefix) :]
            # torch.optim.adam.Adam and torch.optim.Adam both name the class by their last part.
            name = rest.rsplit(".", 1)[-1]
            return name if name[:1].isupper() else None
    return None


def qualified(class_name: str) -> str:
    """``torch.optim.LBFGS`` for ``LBFGS``; a third-party class keeps its own name."""
    return class_name if "." in class_name else f"torch.optim.{class_name}"


def is_supported(class_name: str) -> bool:
    """Whether the runtime has a rule for this class name."""
    return class_name in SUPPORTED or class_name in THIRD_PARTY
