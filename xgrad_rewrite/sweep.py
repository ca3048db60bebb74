"""``xgrad-sweep``: run one training script once per s (via ``XGRAD_S``) and compare the runs.

The paper gives no rule for choosing s and reports settings where some s does worse than the
base optimizer (docs/method.md, "What the paper leaves open"); this makes base + XGrad-S1..S4
side by side one command. It only starts subprocesses, so it never imports
torch: the patched script reads ``XGRAD_S`` itself, through :mod:`xgrad_rewrite.runtime`.

Exit status: 0 when every run exited 0; 1 when any run failed (non-zero exit, could not start, or
timed out; the others still run and are reported); 2 on a usage error.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import click

from xgrad_rewrite.codemod.inserted import MARKER

LineSink = Callable[[int, str], None]
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Run:
    """One run of the script at one s: how it ended, how long it took, what it reported."""

    s: int
    returncode: int | None = None
    wall_s: float = 0.0
    metric: str | None = None
    error: str | None = None
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0

    @property
    def value(self) -> float | None:
        """The metric as a number, when it reads as one (``"97.5%"`` -> 97.5)."""
        if self.metric is None:
            return None
        match = _NUMBER.search(self.metric)
        value = float(match.group(0)) if match else math.nan
        return value if math.isfinite(value) else None

    @property
    def status(self) -> str:
        if self.error is not None:
            return self.error
        return "ok" if self.returncode == 0 else f"exit {self.returncode}"

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(ok=self.ok, value=self.value, status=self.status)
        return data


def parse_s_values(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or a mix) -> distinct non-negative ints, in the order given."""
    values: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        bounds = part.split("-")
        if len(bounds) == 2 and all(b.isdigit() for b in bounds):
            low, high = int(bounds[0]), int(bounds[1])
            if low > high:
                raise ValueError(f"empty range {part!r}")
            new = list(range(low, high + 1))
        elif part.isdigit():
            new = [int(part)]
        else:
            raise ValueError(f"{part!r} is not a non-negative integer or a range like 0-4")
        values.extend(v for v in new if v not in values)
    if not values:
        raise ValueError("no s values given")
    return values


def last_match(pattern: re.Pattern[str], line: str) -> str | None:
    """The last match of ``pattern`` in ``line``: its first group if it has one, else all of it."""
    found = None
    for match in pattern.finditer(line):
        found = match.group(1) if pattern.groups else match.group(0)
    return found


def looks_patched(script: str) -> bool:
    """Whether the script mentions the runtime (a patched loop may also live in an import)."""
    try:
        with open(script, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read()
    except OSError:
        return False


def child_env(s: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the run at ``s``: ``XGRAD_S`` set, unbuffered output, no kill switch."""
    env = dict(os.environ if base is None else base)
    env["XGRAD_S"] = str(s)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("XGRAD_DISABLE", None)  # would turn every s into the base optimizer
    return env


def run_script(
    command: Sequence[str],
    s: int,
    metric: re.Pattern[str] | None = None,
    on_line: LineSink | None = None,
    timeout: float | None = None,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``command`` with ``XGRAD_S=s``, stream its merged output line by line to ``on_line``."""
    run = Run(s=s, command=list(command))
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            cwd=cwd,
            env=child_env(s, env),
        )
    except OSError as exc:
        run.error = f"could not start: {exc.strerror or exc}"
        run.wall_s = time.perf_counter() - start
        return run
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if metric is not None:
                run.metric = last_match(metric, line) or run.metric
            if on_line is not None:
                on_line(s, line)
        run.returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if timer:
            timer.cancel()
    run.wall_s = time.perf_counter() - start
    if timed_out.is_set():
        run.error = f"timeout after {timeout:g}s"
    return run


def sweep(
    script: str,
    s_values: Sequence[int],
    script_args: Sequence[str] = (),
    metric: re.Pattern[str] | None = None,
    jobs: int = 1,
    python: str = sys.executable,
    on_line: LineSink | None = None,
    on_done: Callable[[Run], None] | None = None,
    timeout: float | None = None,
) -> list[Run]:
    """Run ``python script *script_args`` once per s, ``jobs`` at a time; results in s order."""
    command = [python, script, *script_args]

    def one(s: int) -> Run:
        run = run_script(command, s, metric, on_line, timeout)
        if on_done is not None:
            on_done(run)
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, s_values))


def format_table(runs: Sequence[Run]) -> str:
    """A plain-text table; ``vs s=0`` is the metric's difference to the base optimizer's run."""
    base = next((r.value for r in runs if r.s == 0 and r.ok), None)
    # Show differences with as many decimals as the metric itself prints.
    digits = max((len(m.split(".")[1]) for m in _numbers(runs) if "." in m), default=0)
    header = ["s", "variant", "status", "wall", "metric"]
    if base is not None:
        header.append("vs s=0")
    rows = [header]
    for run in runs:
        row = [
            str(run.s),
            "base" if run.s == 0 else f"XGrad-S{run.s}",
            run.status,
            f"{run.wall_s:.1f}s",
            run.metric if run.metric is not None else "-",
        ]
        if base is not None:
            value = run.value if run.ok else None
            row.append("-" if value is None or run.s == 0 else f"{value - base:+.{digits}f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _numbers(runs: Sequence[Run]) -> list[str]:
    found = (_NUMBER.search(r.metric) for r in runs if r.metric is not None)
    return [m.group(0) for m in found if m]


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True},
    epilog="Exit status: 0 all runs exited 0, 1 some run failed, 2 usage error.",
)
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--s", "s_text", default="0,1,2,3,4", show_default=True, help="s values: list and/or range."
)
@click.option("--metric", help="Regex; each run reports its last match (first group if any).")
@click.option(
    "-j", "--jobs", default=1, show_default=True, type=click.IntRange(1), help="Runs at once."
)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")
@click.option("--python", default=sys.executable, show_default="this Python", help="Interpreter.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per run.")
@click.option("-q", "--quiet", is_flag=True, help="Do not stream the runs' output.")
def main(
    script: str,
    script_args: tuple[str, ...],
    s_text: str,
    metric: str | None,
    jobs: int,
    as_json: bool,
    python: str,
    timeout: float | None,
    quiet: bool,
) -> None:
    """Run SCRIPT once per s with XGRAD_S=s (0 = base optimizer) and tabulate the runs.

    SCRIPT is a training script patched by xgrad-rewrite; arguments after `--` go to it:

        xgrad-sweep train.py --s 0-4 --metric 'accuracy: ([\\d.]+)' -j 2 -- --epochs 3
    """
    try:
        s_values = parse_s_values(s_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--s") from None
    try:
        pattern = re.compile(metric) if metric else None
    except re.error as exc:
        raise click.BadParameter(f"not a regex: {exc}", param_hint="--metric") from None
    # Stdout stays pure JSON under --json: streamed lines and progress go to stderr.
    err = as_json
    width = len(f"[s={max(s_values)}]")
    lock = threading.Lock()

    def echo(text: str) -> None:
        with lock:
            click.echo(text, err=err)

    def on_line(s: int, line: str) -> None:
        if not quiet:
            echo(f"{f'[s={s}]':<{width}} {line}")

    def on_done(run: Run) -> None:
        value = f", metric {run.metric}" if run.metric is not None else ""
        echo(f"{f'[s={run.s}]':<{width}} -- {run.status} in {run.wall_s:.1f}s{value}")

    if not looks_patched(script):
        echo(
            f"warning: {script} has no xgrad_rewrite call; unless the code it imports is patched, "
            f"every s trains the same. Patch it first: xgrad-rewrite {script}"
        )
    runs_word = "run" if len(s_values) == 1 else "runs"
    echo(f"xgrad-sweep: {len(s_values)} {runs_word} of {script} (s = {s_text}), {jobs} at a time")
    runs = sweep(script, s_values, script_args, pattern, jobs, python, on_line, on_done, timeout)
    failed = [r for r in runs if not r.ok]
    if as_json:
        payload = {
            "script": script,
            "args": list(script_args),
            "metric": metric,
            "runs": [r.to_json() for r in runs],
            "failed": len(failed),
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo("")
        click.echo(format_table(runs))
        summary = f"{len(runs) - len(failed)} of {len(runs)} runs ok"
        click.echo(
            summary + (f", failed: s = {', '.join(str(r.s) for r in failed)}" if failed else "")
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
