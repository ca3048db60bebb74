"""Shared test setup: a private CLI cache per test, and the ``gpu`` marker's skip.

Markers (registered in pyproject.toml): ``slow`` (runs scripts or benchmarks in subprocesses),
``gpu`` (needs CUDA: skipped here without it), ``distributed`` (several processes). So
``pytest tests/runtime -m "not slow"`` is the quick check of one layer.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cli_cache(monkeypatch, tmp_path_factory):
    """Each test gets its own empty xgrad-rewrite cache (never the user's ~/.cache), so no test
    sees a verdict another test (or a stand-in codemod) left behind."""
    monkeypatch.setenv("XGRAD_REWRITE_CACHE_DIR", str(tmp_path_factory.mktemp("xgrad-cache")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests on a machine without CUDA (torch is imported only if there are any)."""
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    try:
        import torch

        available = torch.cuda.is_available()
    except ImportError:
        available = False
    if not available:
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
