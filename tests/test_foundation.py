"""The package skeleton: torch-free import, the torch extra's error, the installed entry point."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_import_package_and_cli_do_not_import_torch():
    proc = run_python(
        "import sys, xgrad_rewrite, xgrad_rewrite.cli, xgrad_rewrite.codemod; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_version_command_does_not_import_torch():
    proc = run_python(
        "import sys; sys.argv = ['xgrad-rewrite', '--version']\n"
        "import atexit; atexit.register(lambda: print('torch' in sys.modules))\n"
        "from xgrad_rewrite.cli import main; main()"
    )
    assert "xgrad-rewrite, version" in proc.stdout
    assert proc.stdout.strip().endswith("False")


def test_runtime_without_torch_says_what_to_install():
    for module in ("xgrad_rewrite.runtime", "xgrad_rewrite.fx", "xgrad_rewrite.optim"):
        proc = run_python(f"import sys; sys.modules['torch'] = None; import {module}")
        assert proc.returncode != 0
        assert "pip install 'xgrad-rewrite[torch]'" in proc.stderr, proc.stderr
        assert module in proc.stderr


def test_console_script_is_installed_and_runs():
    """The entry point comes from the installed distribution's metadata, not the source tree."""
    dist = importlib.metadata.distribution("xgrad-rewrite")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts["xgrad-rewrite"] == "xgrad_rewrite.cli:main"
    exe = shutil.which("xgrad-rewrite", path=os.path.dirname(sys.executable))
    assert exe is not None, "xgrad-rewrite is not installed beside this Python"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0
    assert dist.version in proc.stdout


def test_declared_dependencies_keep_torch_optional():
    requires = importlib.metadata.requires("xgrad-rewrite") or []
    core = [r for r in requires if "extra ==" not in r]
    # tomli only where tomllib is missing (the CLI reads [tool.xgrad-rewrite] from pyproject.toml)
    tomli = [r for r in core if r.startswith("tomli")]
    assert len(tomli) == 1 and 'python_version < "3.11"' in tomli[0], tomli
    core = [r for r in core if r not in tomli]
    assert sorted(r.split(">")[0].split("=")[0].strip() for r in core) == ["click", "libcst"]
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires)
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
