"""The README's quick start is what CI runs: exactly two commands, read from the README."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_quick_start_is_two_commands_demo_then_tests():
    commands = load_quickstart().quickstart_commands((ROOT / "README.md").read_text("utf-8"))
    assert set(commands) == {"demo", "test"}
    for command in commands.values():
        assert command.startswith("python3 -m venv .venv && ")
        assert "-c constraints.txt" in command
    assert commands["demo"].endswith("sh examples/demo.sh")
    assert "pytest" in commands["test"]


def test_ci_runs_the_readme_commands_not_a_copy():
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert "quickstart.py demo" in ci and "quickstart.py test" in ci
    assert "pytest" not in ci.replace("# pytest exits 5", ""), (
        "CI must not carry its own pytest line"
    )
    assert "ruff check" in ci and "ruff format --check" in ci


def test_demo_patches_shows_diff_and_trains_the_bundled_example():
    demo = (ROOT / "examples" / "demo.sh").read_text("utf-8")
    assert "examples/train_digits.py" in demo
    assert "--diff" in demo
    assert 'train_digits.py" --epochs' in demo
