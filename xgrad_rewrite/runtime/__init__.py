"""XGrad weight prediction at run time: predict / restore around forward+backward.

Placeholder until the runtime lands (issue 4).
"""

from xgrad_rewrite._torch_required import require_torch

require_torch("xgrad_rewrite.runtime")
