"""Framework Trainers that get ``XGradCallback``, and which of their calls the callback pass
would patch without a note, answered on the stdlib ast (no libcst).

:mod:`.trainer_callback` makes the edit with libcst. This module lets ``--check`` of an unpatched
Trainer script answer "would patch" without loading libcst, in the plain case where every call
is patched cleanly; anything else (a note to give, a training loop besides) takes the libcst path.
"""

from __future__ import annotations

import ast

from xgrad_rewrite.codemod.analysis.find import Finder
from xgrad_rewrite.codemod.inserted import CALLBACK  # noqa: F401  (re-exported)

HF = "xgrad_rewrite.integrations.transformers"
LIGHTNING = "xgrad_rewrite.integrations.lightning"
PYTORCH_LIGHTNING = "xgrad_rewrite.integrations.pytorch_lightning"
INTEGRATIONS = (HF, LIGHTNING, PYTORCH_LIGHTNING)

# Qualified name of a Trainer class -> the integration module whose callback it takes.
TRAINERS = {
    "transformers.Trainer": HF,
    "transformers.trainer.Trainer": HF,
    "transformers.Seq2SeqTrainer": HF,
    "transformers.trainer_seq2seq.Seq2SeqTrainer": HF,
    "lightning.Trainer": LIGHTNING,
    "lightning.pytorch.Trainer": LIGHTNING,
    "lightning.pytorch.trainer.Trainer": LIGHTNING,
    "lightning.pytorch.trainer.trainer.Trainer": LIGHTNING,
    "pytorch_lightning.Trainer": PYTORCH_LIGHTNING,
    "pytorch_lightning.trainer.Trainer": PYTORCH_LIGHTNING,
    "pytorch_lightning.trainer.trainer.Trainer": PYTORCH_LIGHTNING,
}
HF_CALLBACKS_POSITION = 9  # transformers.Trainer(model, args, ..., compute_metrics, callbacks)


def trainer_calls(finder: Finder) -> list[tuple[ast.Call, str]]:
    """(call, integration) for every call of a Trainer, by what its name was imported as."""
    out = []
    for call in finder.collected.calls:
        qualified = finder.ids.qualified_names(call.func)
        integration = next((TRAINERS[q] for q in sorted(qualified) if q in TRAINERS), None)
        if integration is not None:
            out.append((call, integration))
    return out


def patched_cleanly(call: ast.Call, integration: str) -> bool:
    """Whether the callback pass adds the callback to ``call`` with nothing to report: no
    ``*args``/``**kwargs``, callbacks not passed by position, and no ``callbacks=`` or a list
    literal there."""
    if any(isinstance(a, ast.Starred) for a in call.args):
        return False
    if any(k.arg is None for k in call.keywords):
        return False
    if integration == HF and len(call.args) > HF_CALLBACKS_POSITION:
        return False
    callbacks = next((k.value for k in call.keywords if k.arg == "callbacks"), None)
    return callbacks is None or isinstance(callbacks, ast.List)
