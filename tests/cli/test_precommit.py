"""The pre-commit hook, run by the real ``pre-commit`` against this repository.

Slow but run (about 1 to 2 minutes in all; needs PyPI): pre-commit builds a fresh virtualenv
for the hook and installs this package with its PyPI dependencies (libcst, click) into it, 20-30 s
each time on the team machine. ``try-repo`` always installs into a throw-away store of its own
(pre-commit's design), so each of its runs pays that; ``pre-commit run`` uses ``PRE_COMMIT_HOME``,
one temporary directory for the whole test session, so its environment is built once.

``try-repo`` on a checkout with uncommitted changes to tracked files tests a temporary commit of
that working tree (pre-commit's documented behaviour); the ``args: [--check]`` test goes through
a ``.pre-commit-config.yaml`` pinned to ``HEAD``, as a user's config would pin a tag.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_cli import TRAIN  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRE_COMMIT = pathlib.Path(sys.executable).with_name("pre-commit")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
    pytest.mark.skipif(not PRE_COMMIT.exists(), reason="needs pre-commit (the test extra)"),
]


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory):
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def repo(tmp_path, pre_commit_home, monkeypatch):
    """A user's repository with one unpatched training script, staged."""
    monkeypatch.setenv("PRE_COMMIT_HOME", str(pre_commit_home))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "train.py").write_text(TRAIN)
    subprocess.run(["git", "add", "train.py"], cwd=tmp_path, check=True)
    return tmp_path


def pre_commit(repo: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PRE_COMMIT), *args], cwd=repo, capture_output=True, text=True, env=os.environ.copy()
    )


def test_hook_manifest():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "- id: xgrad-rewrite" in text
    assert "entry: xgrad-rewrite" in text and "language: python" in text
    assert "types_or: [python, jupyter]" in text


def test_hook_patches_the_script_then_passes(repo):
    first = pre_commit(repo, "try-repo", str(ROOT), "xgrad-rewrite", "--files", "train.py")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "files were modified by this hook" in first.stdout
    patched = (repo / "train.py").read_text()
    assert "xgrad.predict(optimizer, s=1)" in patched and "xgrad.restore(optimizer)" in patched

    second = pre_commit(repo, "try-repo", str(ROOT), "xgrad-rewrite", "--files", "train.py")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Passed" in second.stdout
    assert (repo / "train.py").read_text() == patched


def test_check_args_fail_without_writing(repo):
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n"
        f"-   repo: {ROOT}\n"
        f"    rev: {head}\n"
        f"    hooks:\n"
        f"    -   id: xgrad-rewrite\n"
        f"        args: [--check]\n"
    )
    result = pre_commit(repo, "run", "--files", "train.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 file would be patched" in result.stdout
    assert "files were modified" not in result.stdout
    assert (repo / "train.py").read_text() == TRAIN
