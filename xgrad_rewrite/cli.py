"""The ``xgrad-rewrite`` command line (thin IO around :mod:`xgrad_rewrite.codemod`).

Options, words and exit codes follow black's, so it behaves like the formatters a user already
runs from pre-commit: 0 done, 1 something would change (``--check``/``--diff``), 2 usage error,
123 a file could not be read or parsed. Heavy imports (libcst, difflib, process pools) happen
only when needed, so a hook run on one file starts fast, and torch is never imported.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from xgrad_rewrite import __version__
from xgrad_rewrite.config import Setting, read_pyproject_toml
from xgrad_rewrite.report import Report, WriteBack

if TYPE_CHECKING:
    from xgrad_rewrite.runner import Job, Outcome


class _Regex(click.ParamType):
    """A regular expression, compiled (from the command line or from the config)."""

    name = "regex"
    description = "a regular expression"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, re.Pattern):
            return value
        try:
            return re.compile(value)
        except re.error as e:
            self.fail(f"not a regular expression: {e}", param, ctx)


# Options with cls=Setting may also be set in [tool.xgrad-rewrite] (see xgrad_rewrite.config).
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="xgrad-rewrite")
@click.argument(
    "paths",
    nargs=-1,
    metavar="PATH...",
    type=click.Path(exists=True, allow_dash=True),
    is_eager=True,  # --config's lookup starts from them
)
@click.option(
    "-s",
    "--s",
    "s",
    cls=Setting,
    type=click.FloatRange(min=0),
    default=None,
    help="Prediction steps written into xgrad.predict(optimizer, s=S); 0 turns prediction off. "
    "Default: the s the file's calls already have, else 1.",
)
@click.option("--diff", is_flag=True, help="Print a unified diff of the changes; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("--revert", is_flag=True, help="Remove what xgrad-rewrite inserted (original bytes).")
@click.option(
    "--optimizer",
    "optimizers",
    cls=Setting,
    multiple=True,
    metavar="NAME",
    help="Only patch steps of this optimizer (as written, e.g. optimizer_G); repeatable.",
)
@click.option(
    "--mode",
    cls=Setting,
    type=click.Choice(["eager", "fx"]),
    default="eager",
    show_default=True,
    help="eager: predict/restore around each step; fx: wrap the model once (torch.fx).",
)
@click.option(
    "--exclude",
    cls=Setting,
    type=_Regex(),
    metavar="REGEX",
    help="Skip files and directories whose /-path under a given directory matches.",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour the diff (default: only when stdout is a terminal).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors, the diff and stdout output.")
@click.option("-v", "--verbose", is_flag=True, help="Per file: the steps found, where calls went.")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Process every file, even one the cache says is already in the target state.",
)
@click.option(
    "-j",
    "--jobs",
    cls=Setting,
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Patch files in this many worker processes.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    callback=read_pyproject_toml,
    help="Read [tool.xgrad-rewrite] from this file (default: the nearest pyproject.toml).",
)
@click.pass_context
def main(
    ctx: click.Context,
    paths: tuple[str, ...],
    s: float,
    diff: bool,
    check: bool,
    revert: bool,
    optimizers: tuple[str, ...],
    mode: str,
    exclude: re.Pattern[str] | None,
    color: bool | None,
    quiet: bool,
    verbose: bool,
    no_cache: bool,
    jobs: int,
    config: str | None,
) -> None:
    """Patch PyTorch training scripts (PATH: files, directories, - for stdin) to train with
    XGrad weight prediction, in place."""
    from xgrad_rewrite.codemod.api import Options

    if not paths:
        raise click.UsageError("no PATH given (use - to read from stdin)")
    if verbose and config:
        click.echo(f"Using [tool.xgrad-rewrite] from {config}", err=True)

    from xgrad_rewrite import files, runner
    from xgrad_rewrite.cache import Cache

    options = Options(
        s=None if s is None else int(s) if float(s).is_integer() else s,
        optimizers=tuple(optimizers),
        revert=revert,
        mode=mode,  # type: ignore[arg-type]  # click.Choice checked it
    )
    write_back = WriteBack.from_flags(check=check, diff=diff)
    report = Report(check=not write_back.writes, revert=revert)
    # -v lists each file's steps, so it always runs the codemod (and still fills the cache).
    cache = None if no_cache else Cache.load(options)
    jobs_list = []
    for path in files.discover(paths, exclude):
        if cache is not None and not verbose and path != "-" and cache.is_done(path):
            report.done(False)  # in the target state since a run left it so: no codemod
            continue
        jobs_list.append(runner.Job(path, options, write_back.for_path(path), verbose))

    use_color = sys.stdout.isatty() if color is None else color
    for outcome in _run(jobs_list, jobs):
        _show(outcome, report, quiet=quiet, verbose=verbose, color=use_color)
        if cache is not None and outcome.path != "-":
            # Only a file now in the target state, and quiet: one with a note is run again so
            # the note is shown again.
            written = not outcome.changed or write_back.writes
            if written and not outcome.failed and not outcome.warnings:
                cache.remember(outcome.path)
            else:
                cache.forget(outcome.path)
    if cache is not None:
        cache.write()
    if not quiet:
        click.echo(str(report), err=True)
    ctx.exit(report.return_code)


def _run(jobs_list: list[Job], jobs: int) -> Iterator[Outcome]:
    """Outcomes in the order of ``jobs_list``, whatever order the workers finish in."""
    from xgrad_rewrite import runner

    parallel = [j for j in jobs_list if j.path != "-"]
    if jobs <= 1 or len(parallel) <= 1:
        yield from map(runner.process, jobs_list)
        return
    from concurrent.futures import ProcessPoolExecutor

    # stdin belongs to this process; everything else goes to the pool, results in input order.
    with ProcessPoolExecutor(max_workers=min(jobs, len(parallel))) as pool:
        done = iter(pool.map(runner.process, parallel, chunksize=1))
        for job in jobs_list:
            yield runner.process(job) if job.path == "-" else next(done)


def _show(outcome: Outcome, report: Report, *, quiet: bool, verbose: bool, color: bool) -> None:
    if outcome.failed:
        report.failure()
    else:
        report.done(outcome.changed)
    if outcome.stdout is not None:
        sys.stdout.buffer.write(outcome.stdout)
        sys.stdout.flush()
    if outcome.diff:
        click.echo(_colour_diff(outcome.diff) if color else outcome.diff, nl=False, color=color)
    for message in outcome.warnings:
        if outcome.failed or not quiet:
            click.echo(message, err=True)
    if quiet or outcome.failed:
        return
    if verbose:
        for line in outcome.details:
            click.echo(line, err=True)
    if outcome.changed and outcome.path != "-":
        verb = report.verb
        words = f"would {verb[:-2]}" if report.check else verb  # patched -> would patch
        click.echo(f"{words} {outcome.path}", err=True)
    elif verbose:
        click.echo(f"{outcome.path} left unchanged", err=True)


def _colour_diff(diff: str) -> str:
    """black's colours: bold headers, cyan hunks, green additions, red removals."""
    out = []
    for line in diff.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        end = line[len(body) :]
        if line.startswith(("+++", "---")):
            body = click.style(body, bold=True)
        elif line.startswith("@@"):
            body = click.style(body, fg="cyan")
        elif line.startswith("+"):
            body = click.style(body, fg="green")
        elif line.startswith("-"):
            body = click.style(body, fg="red")
        out.append(body + end)
    return "".join(out)


if __name__ == "__main__":  # pragma: no cover
    main()
