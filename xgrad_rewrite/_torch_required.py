"""A clear error for the parts of the package that need torch, when it is missing."""

from __future__ import annotations


def require_torch(module: str) -> None:
    """Import torch, or raise ImportError saying which extra to install."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"{module} needs PyTorch, which is not installed in this environment. "
            "Install it with `pip install 'xgrad-rewrite[torch]'` (or install torch>=2.1 "
            "the way you normally do for training)."
        ) from error
