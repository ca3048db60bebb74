"""Optimizers the paper evaluates that torch.optim does not ship: AdaBelief and AdaM3 (issue 4)."""

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.optim")
