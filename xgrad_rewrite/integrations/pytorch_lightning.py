"""XGrad for ``pytorch_lightning.Trainer`` (the standalone ``pytorch_lightning`` package).

from xgrad_rewrite.integrations.pytorch_lightning import XGradCallback
trainer = pl.Trainer(max_epochs=10, callbacks=[XGradCallback(s=2)])
"""

from __future__ import annotations

from pytorch_lightning.callbacks import Callback

from xgrad_rewrite.integrations._lightning import XGradLightningHooks

__all__ = ["XGradCallback"]


class XGradCallback(XGradLightningHooks, Callback):
    """Train with XGrad-S``s``: forward and backward on θ̂ = θt − lr·s·Δθ (eq. 31)."""
