"""Shared test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cli_cache(monkeypatch, tmp_path_factory):
    """Each test gets its own empty xgrad-rewrite cache (never the user's ~/.cache), so no test
    sees a verdict another test (or a stand-in codemod) left behind."""
    monkeypatch.setenv("XGRAD_REWRITE_CACHE_DIR", str(tmp_path_factory.mktemp("xgrad-cache")))
