"""Which CPU a benchmark ran on, for its result file (stdlib only, so every script can use it)."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """lscpu's "Model name", else what `platform` knows."""
    fallback = platform.processor() or platform.machine() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return fallback
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else fallback
