"""XGrad for ``lightning.Trainer`` (the ``lightning`` package; see ``pytorch_lightning`` beside).

    from xgrad_rewrite.integrations.lightning import XGradCallback
    trainer = L.Trainer(max_epochs=10, callbacks=[XGradCallback(s=2)])

How the hooks place θ̂ around Lightning's closure: :mod:`xgrad_rewrite.integrations._lightning`.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from xgrad_rewrite.integrations._lightning import XGradLightningHooks

__all__ = ["XGradCallback"]


class XGradCallback(XGradLightningHooks, Callback):
    """Train with XGrad-S``s``: forward and backward on θ̂ = θt − lr·s·Δθ (eq. 31)."""
