"""xgrad-rewrite: make a PyTorch training script train with XGrad weight prediction.

Importing this package must stay cheap and torch-free: the CLI and the pre-commit hook run it
in environments without torch. Only :mod:`xgrad_rewrite.runtime` and :mod:`xgrad_rewrite.fx`
import torch.
"""

__version__ = "0.1.0"
