"""The ``xgrad-rewrite`` command: every option and exit code (click's CliRunner), and the real
installed command in a subprocess.

Tests of pure CLI mechanics swap in ``tests/support/fake_codemod.py`` so they pin the CLI, not the
codemod's placement choices; the end-to-end tests run the real codemod.
"""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner
from support.fake_codemod import fake_rewrite

import xgrad_rewrite.codemod
from xgrad_rewrite import __version__
from xgrad_rewrite.cli import main
from xgrad_rewrite.codemod.api import Diagnostic, Options, Result, StepReport

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXE = pathlib.Path(sys.executable).with_name("xgrad-rewrite")

TRAIN = """\
import torch
import torch.nn as nn

model = nn.Linear(4, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
criterion = nn.MSELoss()
data = [(torch.randn(8, 4), torch.randn(8, 2)) for _ in range(3)]

for epoch in range(2):
    for x, y in data:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
"""


def run(*args: str, input: str | bytes | None = None):  # noqa: A002
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", fake_rewrite)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


# --- end to end, real codemod -------------------------------------------------------------


def test_patches_a_training_loop_in_place(script):
    result = run(str(script))
    assert result.exit_code == 0, result.output
    text = script.read_text()
    assert "import xgrad_rewrite.runtime as xgrad" in text
    predict = text.index("xgrad.predict(optimizer, s=1)")
    restore = text.index("xgrad.restore(optimizer)")
    assert text.index("optimizer.zero_grad()") < predict < text.index("loss = criterion")
    assert text.index("loss.backward()") < restore < text.index("optimizer.step()")
    assert "1 file patched" in result.stderr
    # a second run leaves it alone
    again = run(str(script))
    assert again.exit_code == 0 and script.read_text() == text
    assert "1 file left unchanged" in again.stderr


def test_check_diff_revert_and_s_round_trip(script):
    original = script.read_bytes()
    check = run("--check", str(script))
    assert check.exit_code == 1
    assert "would patch" in check.stderr and "1 file would be patched" in check.stderr
    assert script.read_bytes() == original

    diff = run("--diff", "-s", "2", str(script))
    assert diff.exit_code == 1
    assert f"--- a{script}" in diff.stdout and f"+++ b{script}" in diff.stdout
    assert "+        xgrad.predict(optimizer, s=2)" in diff.stdout
    assert "\x1b[" not in diff.stdout  # not a tty
    assert script.read_bytes() == original

    assert run("-s", "2", str(script)).exit_code == 0
    assert "s=2)" in script.read_text()
    assert run("--check", "-s", "2", str(script)).exit_code == 0
    assert run("-s", "3", str(script)).exit_code == 0  # a changed s updates the calls
    assert "s=3)" in script.read_text() and "s=2)" not in script.read_text()

    revert = run("--revert", str(script))
    assert revert.exit_code == 0 and "1 file reverted" in revert.stderr
    assert script.read_bytes() == original


GAN = """\
import torch
import torch.nn as nn

G = nn.Linear(4, 2)
D = nn.Linear(2, 1)
optimizer_G = torch.optim.Adam(G.parameters(), lr=2e-4)
optimizer_D = torch.optim.Adam(D.parameters(), lr=2e-4)
bce = nn.BCEWithLogitsLoss()

for step in range(10):
    real = torch.randn(8, 2)
    z = torch.randn(8, 4)

    optimizer_D.zero_grad()
    loss_D = bce(D(real), torch.ones(8, 1)) + bce(D(G(z).detach()), torch.zeros(8, 1))
    loss_D.backward()
    optimizer_D.step()

    optimizer_G.zero_grad()
    loss_G = bce(D(G(z)), torch.ones(8, 1))
    loss_G.backward()
    optimizer_G.step()
"""


def test_optimizer_option_limits_the_patch(tmp_path):
    gan = tmp_path / "gan.py"
    gan.write_text(GAN)
    assert run("--optimizer", "optimizer_G", str(gan)).exit_code == 0
    text = gan.read_text()
    assert "xgrad.predict(optimizer_G, s=1)" in text and "xgrad.restore(optimizer_G)" in text
    assert "optimizer_D, s=" not in text and "xgrad.restore(optimizer_D)" not in text
    gan.write_text(GAN)
    assert run(str(gan)).exit_code == 0  # both by default
    assert "xgrad.restore(optimizer_D)" in gan.read_text()


def test_unpatchable_loop_is_a_warning_not_a_failure(tmp_path):
    lbfgs = tmp_path / "lbfgs.py"
    lbfgs.write_text(
        "import torch\n\n"
        "model = torch.nn.Linear(2, 1)\n"
        "optimizer = torch.optim.LBFGS(model.parameters())\n"
        "x, y = torch.randn(4, 2), torch.randn(4, 1)\n\n\n"
        "def closure():\n"
        "    optimizer.zero_grad()\n"
        "    loss = ((model(x) - y) ** 2).mean()\n"
        "    loss.backward()\n"
        "    return loss\n\n\n"
        "for _ in range(3):\n"
        "    optimizer.step(closure)\n"
    )
    before = lbfgs.read_bytes()
    result = run("--check", str(lbfgs))
    assert result.exit_code == 0, result.output
    assert lbfgs.read_bytes() == before
    assert f"{lbfgs}:" in result.stderr  # file:line:col: CODE message


def test_parse_error_exits_123_and_other_files_still_patched(tmp_path):
    good = tmp_path / "a_good.py"
    good.write_text(TRAIN)
    bad = tmp_path / "b_bad.py"
    bad.write_text("import torch\n\ndef broken(:\n    pass\n")
    before = bad.read_bytes()
    result = run(str(tmp_path))
    assert result.exit_code == 123
    assert f"{bad}:3:" in result.stderr
    assert bad.read_bytes() == before
    assert "xgrad.predict(optimizer" in good.read_text()
    assert "1 file patched, 1 file failed" in result.stderr


def test_installed_command_in_a_subprocess(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    proc = subprocess.run(
        [str(EXE), "--check", "train.py"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "1 file would be patched" in proc.stderr
    proc = subprocess.run([str(EXE), "-s", "2", "."], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "xgrad.predict(optimizer, s=2)" in (tmp_path / "train.py").read_text()
    proc = subprocess.run(
        [str(EXE), "-", "--revert"],
        cwd=tmp_path,
        input=(tmp_path / "train.py").read_text(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout == TRAIN


def test_installed_command_usage_error_and_version():
    proc = subprocess.run([str(EXE)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no PATH given" in proc.stderr
    proc = subprocess.run([str(EXE), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_a_cli_run_never_imports_torch(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    code = (
        "import sys\nfrom xgrad_rewrite.cli import main\n"
        "try:\n    main(['--diff', '-j', '1', sys.argv[1]])\n"
        "except SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.stderr.strip().endswith("False"), proc.stderr


# --- mechanics (fake codemod) -------------------------------------------------------------


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and f"xgrad-rewrite, version {__version__}" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "no PATH given"),
        (("missing.py",), "does not exist"),
        (("-s", "-1", "x.py"), "-1"),
        (("--mode", "jit", "x.py"), "jit"),
        (("-j", "0", "x.py"), "0"),
        (("--exclude", "(", "x.py"), "not a regular expression"),
        (("--bogus", "x.py"), "No such option"),
    ],
)
def test_usage_errors_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.py").write_text("x = 1\n")
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_check_and_write_with_fake(fake, script):
    original = script.read_bytes()
    assert run("--check", str(script)).exit_code == 1
    assert script.read_bytes() == original
    result = run(str(script))
    assert result.exit_code == 0
    assert f"patched {script}" in result.stderr
    assert "xgrad.predict(optimizer, s=1)" in script.read_text()
    assert run("--check", str(script)).exit_code == 0


def test_s_is_written_as_given(fake, script):
    assert run("--s", "0.5", str(script)).exit_code == 0
    assert "s=0.5)" in script.read_text()
    assert run("-s", "4", str(script)).exit_code == 0
    assert "s=4)" in script.read_text()  # an integral s stays an int, not 4.0


def test_options_reach_the_codemod(monkeypatch, script):
    seen = []

    def spy(source, options):
        seen.append(options)
        return Result(source, False)

    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", spy)
    args = ("--mode", "fx", "--revert", "--optimizer", "opt_G", "--optimizer", "opt_D", "-s", "3")
    assert run(*args, str(script)).exit_code == 0
    assert seen == [Options(s=3, optimizers=("opt_G", "opt_D"), revert=True, mode="fx")]


def test_diff_colour_flags(fake, script):
    plain = run("--diff", "--no-color", str(script))
    coloured = run("--diff", "--color", str(script))
    assert plain.exit_code == coloured.exit_code == 1
    assert "\x1b[" not in plain.stdout
    assert "\x1b[32m+" in coloured.stdout and "\x1b[1m---" in coloured.stdout
    assert "\x1b[36m@@" in coloured.stdout
    assert "1 file would be patched" in plain.stderr


def test_diff_marks_a_missing_final_newline(fake, tmp_path):
    path = tmp_path / "t.py"
    path.write_text(TRAIN.rstrip("\n"))
    result = run("--diff", str(path))
    assert "\\ No newline at end of file" in result.stdout


def test_quiet_prints_only_errors(fake, tmp_path, script):
    (tmp_path / "bad.py").write_text("def f(:\n")
    result = run("-q", str(tmp_path))
    assert result.exit_code == 123
    assert result.stderr.strip() == f"{tmp_path / 'bad.py'}:1:6: error: invalid syntax"
    assert "xgrad.predict" in script.read_text()


def test_verbose_reports_steps_and_unchanged_files(fake, tmp_path, script):
    (tmp_path / "other.py").write_text("x = 1\n")
    result = run("-v", str(tmp_path))
    assert result.exit_code == 0
    assert (
        f"{script}: step of 'optimizer': backward at line 15, step at line 17; "
        "predict at line 13, restore at line 16"
    ) in result.stderr
    assert f"{tmp_path / 'other.py'} left unchanged" in result.stderr
    assert "1 file patched, 1 file left unchanged" in result.stderr


def test_diagnostics_are_warnings_even_under_check(monkeypatch, script):
    def warn(source, options):
        d = Diagnostic(7, 4, "XG201", "LBFGS closure loop left unchanged")
        step = StepReport("optimizer", 13, 14, None, None)
        return Result(source, False, (d,), (step,))

    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", warn)
    result = run("--check", "-v", str(script))
    assert result.exit_code == 0
    assert f"{script}:7:4: XG201 LBFGS closure loop left unchanged" in result.stderr
    assert "no calls placed" in result.stderr
    quiet = run("--check", "-q", str(script))
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_unstable_or_invalid_rewrite_leaves_file_untouched(monkeypatch, script):
    before = script.read_bytes()
    monkeypatch.setattr(
        xgrad_rewrite.codemod, "rewrite", lambda src, o: Result(src + "def (:\n", True)
    )
    result = run(str(script))
    assert result.exit_code == 123 and "does not parse" in result.stderr
    assert script.read_bytes() == before
    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", lambda src, o: Result(src + "#\n", True))
    result = run(str(script))
    assert result.exit_code == 123 and "second pass" in result.stderr
    assert script.read_bytes() == before


def test_undecodable_file_exits_123_and_others_are_processed(fake, tmp_path, script):
    bad = tmp_path / "latin.py"
    bad.write_bytes(b"# -*- coding: no-such-codec -*-\nx = 1\n")
    result = run(str(tmp_path))
    assert result.exit_code == 123
    assert f"{bad}:1:0: error: cannot decode" in result.stderr
    assert "xgrad.predict" in script.read_text()


def test_stdin_to_stdout(fake):
    result = run("-", input=TRAIN)
    assert result.exit_code == 0
    assert "xgrad.predict(optimizer, s=1)" in result.stdout
    assert run("--check", "-", input=TRAIN).exit_code == 1
    diff = run("--diff", "-", input=TRAIN)
    assert diff.exit_code == 1 and "+++ b/-" in diff.stdout
    unchanged = run("-", input="x = 1\n")
    assert unchanged.exit_code == 0 and unchanged.stdout == "x = 1\n"


def test_bytes_are_kept_crlf_cookie_and_mode(fake, tmp_path):
    path = tmp_path / "crlf.py"
    source = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + TRAIN
    path.write_bytes(source.replace("\n", "\r\n").encode("latin-1"))
    path.chmod(0o754)
    assert run(str(path)).exit_code == 0
    data = path.read_bytes()
    assert b"# caf\xe9\r\n" in data  # still latin-1, still CRLF
    assert b"xgrad.predict(optimizer, s=1)\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o754
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert run("--revert", str(path)).exit_code == 0
    assert path.read_bytes() == source.replace("\n", "\r\n").encode("latin-1")


def test_directories_recursed_skipping_venvs_and_excludes(fake, tmp_path):
    for rel in [
        "pkg/train.py",
        "pkg/nb.ipynb",
        "pkg/notes.txt",
        ".git/hooks/x.py",
        ".venv/lib/x.py",
        "venv/x.py",
        "env3/lib/x.py",
        "__pycache__/x.py",
        "build/x.py",
        "node_modules/x.py",
        ".tox/x.py",
        "legacy/old.py",
        "pkg/gen_pb2.py",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n" if not rel.endswith(".ipynb") else '{"cells": []}\n')
    (tmp_path / "env3" / "pyvenv.cfg").write_text("home = /usr\n")
    result = run("-v", "--exclude", r"/legacy/|_pb2\.py$", str(tmp_path))
    assert result.exit_code == 0, result.output
    listed = sorted(
        line.split(" left unchanged")[0] for line in result.stderr.splitlines() if "left" in line
    )
    assert listed[:-1] == [str(tmp_path / "pkg/nb.ipynb"), str(tmp_path / "pkg/train.py")]
    assert "2 files left unchanged" in result.stderr
    # a file named on the command line is taken even if it matches --exclude (black's rule)
    named = run("--check", "--exclude", "legacy", str(tmp_path / "legacy/old.py"))
    assert "1 file would be left unchanged" in named.stderr


def test_a_file_named_twice_is_processed_once(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    result = run("--check", "./train.py", ".", "train.py")
    assert result.exit_code == 1
    assert "1 file would be patched" in result.stderr


def test_jobs_give_the_same_results_in_the_same_order(fake, tmp_path):
    for n in range(4):
        (tmp_path / f"s{n}.py").write_text(TRAIN)
    (tmp_path / "s2.py").write_text("def f(:\n")
    serial = run("--diff", str(tmp_path))
    parallel = run("--diff", "-j", "2", str(tmp_path))
    # fake is monkeypatched in this process only; workers run the real codemod, so compare
    # structure: same order of files in the messages, same exit code.
    assert serial.exit_code == parallel.exit_code == 123
    order = [str(tmp_path / f"s{n}.py") for n in range(4)]
    assert [p for p in order if p in serial.stderr] == order
    assert parallel.stderr.index("s2.py") < parallel.stderr.rindex("file")


def test_jobs_real_codemod_same_output_as_serial(tmp_path):
    for n in range(4):
        (tmp_path / f"s{n}.py").write_text(TRAIN)
    serial = run("--diff", str(tmp_path))
    parallel = run("--diff", "-j", "3", str(tmp_path))
    assert serial.exit_code == parallel.exit_code == 1
    assert serial.stdout == parallel.stdout and serial.stderr == parallel.stderr
    assert serial.stdout.index("s0.py") < serial.stdout.index("s3.py")


def test_config_from_nearest_pyproject_and_cli_wins(monkeypatch, tmp_path):
    seen = []

    def spy(source, options):
        seen.append(options)
        return Result(source, False)

    monkeypatch.setattr(xgrad_rewrite.codemod, "rewrite", spy)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.xgrad-rewrite]\ns = 3\noptimizer = ["optimizer_G"]\nmode = "fx"\n'
        'exclude = "/skip/"\n'
    )
    (tmp_path / "src" / "skip").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "src" / "skip" / "b.py").write_text("x = 1\n")
    assert run(str(tmp_path / "src")).exit_code == 0
    assert seen == [Options(s=3, optimizers=("optimizer_G",), mode="fx")]
    seen.clear()
    assert (
        run("-s", "2", "--optimizer", "opt", "--mode", "eager", str(tmp_path / "src")).exit_code
        == 0
    )
    assert seen == [Options(s=2, optimizers=("opt",), mode="eager")]
    seen.clear()
    # --no-cache: a.py is cached from the first run (same options), and the spy counts files.
    assert run("--no-cache", "--exclude", "nothing", str(tmp_path / "src")).exit_code == 0
    assert len(seen) == 2  # the command line's --exclude replaced the config's


def test_config_lookup_stops_at_repository_root(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(
        xgrad_rewrite.codemod, "rewrite", lambda s, o: seen.append(o) or Result(s, False)
    )
    (tmp_path / "pyproject.toml").write_text("[tool.xgrad-rewrite]\ns = 3\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "a.py").write_text("x = 1\n")
    assert run(str(repo / "a.py")).exit_code == 0
    assert seen == [Options(s=None)]  # no --s: keep the s the file already has


@pytest.mark.parametrize(
    "table, message",
    [
        ("optimizers = ['a']", "unknown key 'optimizers'"),
        ("check = true", "unknown key 'check'"),  # what to do this run is no setting
        ("s = -1", "s must be a number >= 0"),
        ("s = '2'", "s must be a number >= 0 (got '2')"),  # TOML's types, not click's parsing
        ("s = true", "s must be a number"),
        ("mode = 'jit'", "mode must be"),
        ("optimizer = 3", "optimizer must be"),
        ("optimizer = ['a', 1]", "optimizer must be"),
        ("jobs = 0", "jobs must be"),
        ("jobs = 1.5", "jobs must be an integer >= 1"),
        ("exclude = '('", "exclude must be a regular expression"),
        ("[tool.xgrad-rewrite.s]", "must be a number"),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, table, message):
    (tmp_path / "pyproject.toml").write_text(f"[tool.xgrad-rewrite]\n{table}\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    result = run(str(tmp_path / "a.py"))
    assert result.exit_code == 2 and message in result.stderr
    assert str(tmp_path / "pyproject.toml") in result.stderr


def test_config_option_names_the_file_and_verbose_says_so(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(
        xgrad_rewrite.codemod, "rewrite", lambda s, o: seen.append(o) or Result(s, False)
    )
    (tmp_path / "pyproject.toml").write_text("[tool.xgrad-rewrite]\ns = 3\n")
    (tmp_path / "other.toml").write_text("[tool.xgrad-rewrite]\nmode = 'fx'\njobs = 1\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    result = run("-v", "--config", str(tmp_path / "other.toml"), str(tmp_path / "a.py"))
    assert result.exit_code == 0
    assert f"Using [tool.xgrad-rewrite] from {tmp_path / 'other.toml'}" in result.stderr
    assert seen == [Options(s=None, mode="fx")]  # that file only: not the nearest pyproject's s
    missing = run("--config", str(tmp_path / "nope.toml"), str(tmp_path / "a.py"))
    assert missing.exit_code == 2 and "nope.toml" in missing.stderr
    (tmp_path / "broken.toml").write_text("[tool.xgrad-rewrite\n")
    broken = run("--config", str(tmp_path / "broken.toml"), str(tmp_path / "a.py"))
    assert broken.exit_code == 2 and "broken.toml" in broken.stderr


def test_a_setting_needs_only_its_declaration(tmp_path):
    """A new option declared with cls=Setting is read from [tool.xgrad-rewrite] (by its long
    name), converted and checked by its click type, and the command line still wins."""
    import click

    from xgrad_rewrite.config import Setting, read_pyproject_toml

    @click.command()
    @click.argument("paths", nargs=-1, type=click.Path(exists=True), is_eager=True)
    @click.option("--max-steps", cls=Setting, type=click.IntRange(min=1), default=5)
    @click.option("--config", is_eager=True, callback=read_pyproject_toml)
    def cmd(paths, max_steps, config):
        click.echo(f"{max_steps!r} {config}")

    (tmp_path / "pyproject.toml").write_text("[tool.xgrad-rewrite]\nmax_steps = 7\n")
    runner = CliRunner()
    assert runner.invoke(cmd, [str(tmp_path)]).output == f"7 {tmp_path / 'pyproject.toml'}\n"
    assert runner.invoke(cmd, ["--max-steps", "2", str(tmp_path)]).output.startswith("2 ")
    (tmp_path / "pyproject.toml").write_text("[tool.xgrad-rewrite]\nmax-steps = 0\n")
    bad = runner.invoke(cmd, [str(tmp_path)])
    assert bad.exit_code == 2 and "max-steps must be an integer >= 1 (got 0)" in bad.output


def test_summary_words():
    from xgrad_rewrite.report import Report

    report = Report()
    for changed in (True, True, False, False, False, False, False):
        report.done(changed)
    report.failure()
    assert str(report) == "2 files patched, 5 files left unchanged, 1 file failed"
    assert report.return_code == 123
    check = Report(check=True)
    check.done(True)
    assert str(check) == "1 file would be patched" and check.return_code == 1
    assert Report(revert=True, changed=1).__str__() == "1 file reverted"
    assert Report().return_code == 0 and str(Report()) == "No files to process"


def test_check_without_s_accepts_a_file_patched_with_another_s(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "model = torch.nn.Linear(2, 1)\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for x in [torch.randn(3, 2)]:\n"
        "    loss = model(x).sum()\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
    )
    assert run("--s", "2", str(script)).exit_code == 0
    assert run("--check", str(script)).exit_code == 0
    assert run("--check", "--s", "1", str(script)).exit_code == 1
