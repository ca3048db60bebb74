"""Callbacks that add XGrad to training frameworks without a visible loop.

- :mod:`xgrad_rewrite.integrations.transformers`: ``XGradCallback`` for ``transformers.Trainer``.
- :mod:`xgrad_rewrite.integrations.lightning`: ``XGradCallback`` for ``lightning.Trainer``
  (:mod:`xgrad_rewrite.integrations.pytorch_lightning` for the ``pytorch_lightning`` package).

Import the submodule you need; this package itself imports neither torch nor a framework, so
``import xgrad_rewrite`` stays cheap (the CLI and pre-commit hook run without them).
"""
