"""The CLI's cache of files already in the target state (like black's).

conftest.py gives every test its own empty ``XGRAD_REWRITE_CACHE_DIR``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import xgrad_rewrite.codemod
from xgrad_rewrite import cache as cache_mod
from xgrad_rewrite.cache import Cache, cache_root
from xgrad_rewrite.cli import main
from xgrad_rewrite.codemod.api import Options

TRAIN = textwrap.dedent(
    """\
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x in [torch.randn(2, 4)]:
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
    """
)
LBFGS = textwrap.dedent(
    """\
    import torch

    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.LBFGS(model.parameters())
    for x in [torch.randn(2, 4)]:
        def closure():
            optimizer.zero_grad()
            loss = model(x).sum()
            loss.backward()
            return loss
        optimizer.step(closure)
    """
)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def calls(monkeypatch):
    """Paths' sources the real codemod was asked to rewrite, in order."""
    seen: list[str] = []
    real = xgrad_rewrite.codemod.rewrite

    def spy(source, options=None):
        seen.append(source)
        return real(source, options)

    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", spy)
    return seen


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def test_a_patched_file_is_answered_from_the_cache(script, calls):
    assert run(str(script)).exit_code == 0  # patches, and remembers the patched bytes
    patched = script.read_bytes()
    calls.clear()
    result = run("--check", str(script))
    assert result.exit_code == 0
    assert calls == []  # the codemod never ran
    assert "1 file would be left unchanged" in result.stderr
    assert script.read_bytes() == patched
    assert run("--check", "--no-cache", str(script)).exit_code == 0
    assert len(calls) == 1  # --no-cache runs it


def test_cache_location_and_format(script, monkeypatch, tmp_path):
    assert run(str(script)).exit_code == 0
    (file,) = cache_root().glob("cache.*.json")
    assert cache_root().parent == pathlib.Path(os.environ["XGRAD_REWRITE_CACHE_DIR"])
    assert cache_root().name == xgrad_rewrite.__version__
    ((path, (mtime_ns, size, digest)),) = json.loads(file.read_text()).items()
    assert path == str(script.resolve())
    assert (mtime_ns, size) == (script.stat().st_mtime_ns, script.stat().st_size)
    assert len(digest) == 64
    monkeypatch.delenv("XGRAD_REWRITE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "xgrad-rewrite" / xgrad_rewrite.__version__
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = tmp_path / "home"
    assert cache_root() == home / ".cache" / "xgrad-rewrite" / xgrad_rewrite.__version__


def test_no_cache_neither_reads_nor_writes(script):
    assert run("--no-cache", str(script)).exit_code == 0
    assert not cache_root().exists()


def test_changed_bytes_miss_touched_identical_bytes_hit(script, calls):
    run(str(script))
    calls.clear()
    os.utime(script, ns=(1, 1))  # same bytes, other mtime (git checkout, cp)
    assert run("--check", str(script)).exit_code == 0
    assert calls == []
    script.write_text(TRAIN)  # back to unpatched: same mtime trick cannot fool the hash
    os.utime(script, ns=(1, 1))
    assert run("--check", str(script)).exit_code == 1
    assert len(calls) == 1


def test_other_options_miss(script, calls):
    run(str(script))
    calls.clear()
    result = run("--check", "-s", "2", str(script))
    assert result.exit_code == 1  # s=1 was cached; s=2 would update the calls
    assert len(calls) == 1


def test_a_file_that_would_change_is_not_cached(script, calls):
    assert run("--check", str(script)).exit_code == 1
    assert run("--check", str(script)).exit_code == 1
    assert len(calls) == 2


def test_failed_files_are_never_cached(tmp_path, calls):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\ndef f(:\n")
    for _ in range(2):
        result = run(str(bad))
        assert result.exit_code == 123
        assert f"{bad}:2:" in result.stderr
    assert len(calls) == 2
    assert not list(cache_root().glob("cache.*.json"))


def test_a_file_with_a_note_is_run_again_so_the_note_shows_again(tmp_path, calls):
    path = tmp_path / "lbfgs.py"
    path.write_text(LBFGS)
    for _ in range(2):
        result = run("--check", str(path))
        assert result.exit_code == 0
        assert f"{path}:" in result.stderr  # file:line:col: CODE message
    assert len(calls) == 2


def test_verbose_always_runs_the_codemod(script, calls):
    run(str(script))
    calls.clear()
    result = run("-v", str(script))
    assert len(calls) == 1
    assert "step of 'optimizer'" in result.stderr


def test_corrupt_cache_files_count_as_empty(script, calls):
    run(str(script))
    (file,) = cache_root().glob("cache.*.json")
    for garbage in (b"\x80\x04not json", b"[1, 2]", b'{"x": [1, "a", 3]}', b""):
        file.write_bytes(garbage)
        calls.clear()
        assert run("--check", str(script)).exit_code == 0
        assert len(calls) == 1  # nothing usable: the codemod ran
        assert str(script.resolve()) in json.loads(file.read_text())  # and the file is whole


def test_concurrent_writers_merge_and_leave_no_temp_files(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    first, second = Cache.load(Options()), Cache.load(Options())  # both read an empty cache
    first.remember(str(a))
    second.remember(str(b))
    first.write()
    second.write()
    fresh = Cache.load(Options())
    assert fresh.is_done(str(a)) and fresh.is_done(str(b))
    assert [p.name for p in fresh.file.parent.iterdir()] == [fresh.file.name]
    a.unlink()  # the next write drops the entry of a file that is gone
    c = tmp_path / "c.py"
    c.write_text("z = 3\n")
    fresh.remember(str(c))
    fresh.write()
    assert set(json.loads(fresh.file.read_text())) == {str(b.resolve()), str(c.resolve())}


def test_unwritable_cache_dir_is_not_an_error(script, monkeypatch, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("XGRAD_REWRITE_CACHE_DIR", str(blocker))
    assert run(str(script)).exit_code == 0
    assert "xgrad.predict(optimizer" in script.read_text()


def test_no_home_directory_means_no_cache(script, monkeypatch, calls):
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XGRAD_REWRITE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pathlib.Path, "home", staticmethod(no_home))
    assert run(str(script)).exit_code == 0
    calls.clear()
    assert run("--check", str(script)).exit_code == 0
    assert len(calls) == 1  # nothing was cached, and nothing failed


def test_a_codemod_source_change_changes_the_key(monkeypatch, tmp_path):
    before = cache_mod.options_key(Options())
    assert cache_mod.options_key(Options(s=2)) != before
    fake_package = tmp_path / "xgrad_rewrite"
    (fake_package / "codemod").mkdir(parents=True)
    (fake_package / "codemod" / "find.py").write_text("# v1\n")
    monkeypatch.setattr(cache_mod, "__file__", str(fake_package / "cache.py"))
    one = cache_mod.options_key(Options())
    (fake_package / "codemod" / "find.py").write_text("# v2, longer\n")
    assert cache_mod.options_key(Options()) != one


def test_a_change_in_a_codemod_sub_package_changes_the_key(monkeypatch, tmp_path):
    analysis = tmp_path / "xgrad_rewrite" / "codemod" / "analysis"
    analysis.mkdir(parents=True)
    (analysis / "find.py").write_text("# v1\n")
    monkeypatch.setattr(cache_mod, "__file__", str(tmp_path / "xgrad_rewrite" / "cache.py"))
    one = cache_mod.options_key(Options())
    (analysis / "find.py").write_text("# v2, longer\n")
    assert cache_mod.options_key(Options()) != one


def test_a_warm_run_never_imports_libcst(script):
    code = textwrap.dedent(
        """\
        import sys
        from xgrad_rewrite.cli import main
        try:
            main(sys.argv[1:])
        except SystemExit as e:
            print(e.code, "libcst" in sys.modules)
        """
    )

    def once(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args, str(script)], capture_output=True, text=True
        )
        return proc.stdout.strip()

    assert once() == "0 True"  # patches (libcst needed), fills the cache
    assert once("--check") == "0 False"
    # without the cache the ast answers "already patched" too (codemod/analysis/inplace.py) ...
    assert once("--check", "--no-cache") == "0 False"
    # ... and libcst is loaded only to change the file (the control)
    assert once("--no-cache", "-s", "3") == "0 True"
