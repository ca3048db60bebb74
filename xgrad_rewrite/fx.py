"""FX path: weight prediction built into a traced model's graph (issue 6)."""

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.fx")
