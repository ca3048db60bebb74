"""Does XGrad help here? Base optimizer vs XGrad-S1..S4 on two small CPU tasks, several seeds.

Tasks (nothing is downloaded): (a) a small CNN on scikit-learn's bundled ``load_digits`` images,
(b) a small character-level LSTM language model on the Python standard library's own source.
Optimizers: SGDM, Adam, AdamW, AdaBelief, AdaM3 (``xgrad_rewrite.optim`` for the last two).

The variants come from the project's own pipeline: the scripts in ``convergence_scripts/`` are
plain training scripts; this copies them, patches the copies with the ``xgrad-rewrite`` CLI, and
runs each patched copy with ``XGRAD_S`` = 0..4 (0 = the base optimizer) through
:func:`xgrad_rewrite.sweep.run_script`, the runner behind ``xgrad-sweep``.

    python benchmarks/convergence.py            # the full run: 9.4 min on 2 shared cores
    python benchmarks/convergence.py --quick    # a smoke run in well under a minute

Writes ``convergence.md`` (tables), ``convergence.json`` (every epoch of every run) and
``convergence_<task>.png`` (learning curves) into ``--out``.
"""

from __future__ import annotations

import datetime
import difflib
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import click
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `machine`

from machine import cpu_model  # noqa: E402

from xgrad_rewrite.sweep import run_script  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = HERE / "convergence_scripts"
OPTIMIZERS = ["sgdm", "adam", "adamw", "adabelief", "adam3"]
NAMES = dict(sgdm="SGDM", adam="Adam", adamw="AdamW", adabelief="AdaBelief", adam3="AdaM3")


@dataclass(frozen=True)
class Task:
    """One training script, the metric it reports, and which direction is better."""

    name: str
    script: str
    title: str
    metric: str
    label: str
    higher_is_better: bool
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()


TASKS = {
    "digits": Task(
        "digits", "digits_cnn.py", "CNN on scikit-learn digits (8x8, 1437 train / 360 test)",
        "test_acc", "test accuracy (%)", True,
        args=("--epochs", "10"), quick_args=("--epochs", "1"),
    ),
    "lstm": Task(
        "lstm", "char_lstm.py", "char-level LSTM LM on Python stdlib source (100k / 20k chars)",
        "valid_ppl", "validation perplexity", False,
        args=("--epochs", "3", "--train-chars", "100000"),
        quick_args=("--epochs", "1", "--train-chars", "20000", "--valid-chars", "5000"),
    ),
}  # fmt: skip


@dataclass
class Job:
    """One process: a patched script at one (optimizer, s), all seeds in a row."""

    task: Task
    optimizer: str
    s: int
    command: list[str]
    epochs: list[dict] = field(default_factory=list)
    status: str = "pending"
    wall_s: float = 0.0
    tail: list[str] = field(default_factory=list)


# --- patching -----------------------------------------------------------------------------------


def xgrad_rewrite_exe() -> str:
    exe = shutil.which("xgrad-rewrite", path=os.path.dirname(sys.executable))
    return exe or shutil.which("xgrad-rewrite") or "xgrad-rewrite"


def patch_with_cli(paths: list[pathlib.Path]) -> None:
    """Patch the files in place with the real CLI (one call for all: one interpreter start)."""
    exe = xgrad_rewrite_exe()
    done = subprocess.run([exe, *map(str, paths), "--s", "1"], capture_output=True, text=True)
    missed = [p.name for p in paths if "xgrad.predict(" not in p.read_text("utf-8")]
    if done.returncode != 0 or missed:
        raise click.ClickException(
            f"xgrad-rewrite did not patch {', '.join(missed) or 'the scripts'} "
            f"(exit {done.returncode}):\n{done.stdout}{done.stderr}\n"
            "rerun with --patch fallback to insert the calls by text"
        )


def patch_by_text(path: pathlib.Path) -> None:
    """Fallback when the codemod is unavailable: the design's two calls, inserted by line.

    Valid for the two bundled scripts only (one loop each, ``optimizer.zero_grad()`` right before
    the forward, the statement after ``loss.backward()`` belongs to the step).
    """
    lines = path.read_text("utf-8").splitlines(keepends=True)
    out, pending_restore = [], False
    for line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        if pending_restore:
            out.append(f"{indent}xgrad.restore(optimizer)\n")
            pending_restore = False
        if line.startswith("import argparse"):
            out.append("import xgrad_rewrite.runtime as xgrad\n")
        out.append(line)
        if line.strip() == "optimizer.zero_grad()":
            out.append(f"{indent}xgrad.predict(optimizer, s=1)\n")
        pending_restore = pending_restore or line.strip() == "loss.backward()"
    path.write_text("".join(out), "utf-8")


def prepare(tasks: list[Task], workdir: pathlib.Path, mode: str) -> dict[str, str]:
    """Copy and patch each task's script into ``workdir``; return the diffs by task."""
    targets = [workdir / task.script for task in tasks]
    for task, target in zip(tasks, targets, strict=True):
        shutil.copy(SCRIPTS / task.script, target)
        if mode == "fallback":
            patch_by_text(target)
    if mode == "cli":
        patch_with_cli(targets)
    diffs = {}
    for task, target in zip(tasks, targets, strict=True):
        before = (SCRIPTS / task.script).read_text("utf-8").splitlines(keepends=True)
        after = target.read_text("utf-8").splitlines(keepends=True)
        name = f"convergence_scripts/{task.script}"
        diffs[task.name] = "".join(difflib.unified_diff(before, after, name, name + " (patched)"))
    return diffs


# --- running ------------------------------------------------------------------------------------


def run_jobs(jobs: list[Job], parallel: int, progress: tqdm) -> None:
    lock = threading.Lock()

    def one(job: Job) -> None:
        def on_line(s: int, line: str) -> None:
            if line.startswith("RESULT "):
                record = json.loads(line[len("RESULT ") :])
                with lock:
                    job.epochs.append(record)
                    progress.update(1)
            else:
                job.tail = (job.tail + [line])[-20:]

        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        run = run_script(job.command, job.s, on_line=on_line, env=env)
        job.wall_s = run.wall_s
        job.status = run.status
        with lock:
            progress.set_postfix_str(f"{job.task.name}/{job.optimizer}/s={job.s} {run.status}")
            if not run.ok:
                progress.write(f"FAILED {job.task.name} {job.optimizer} s={job.s}: {run.status}")
                progress.write("\n".join(job.tail))

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, jobs))


# --- summarising --------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def final_values(job: Job, epoch: int | None = None) -> list[float]:
    """The metric of every seed at ``epoch`` (default: the last one)."""
    if epoch is None:
        epoch = max((r["epoch"] for r in job.epochs), default=0)
    return [r[job.task.metric] for r in job.epochs if r["epoch"] == epoch]


def early_epoch(jobs: list[Job]) -> int | None:
    """An epoch about a third of the way in, where speed of convergence shows; None if too short."""
    last = max((r["epoch"] for j in jobs for r in j.epochs), default=0)
    return max(1, round(0.3 * last)) if last >= 3 else None


def signed(fmt: str, value: float) -> str:
    text = fmt.format(value)
    return text.replace("-", "−") if text.startswith("-") else "+" + text


def epoch_time(job: Job) -> float:
    """Fastest training epoch (loop only, no evaluation): the least disturbed by other load."""
    return min(r["epoch_s"] for r in job.epochs) if job.epochs else float("nan")


VERDICT_ORDER = ["better", "within noise", "worse", "n/a (1 seed)"]


def verdict(base: list[float], other: list[float], higher_is_better: bool) -> str:
    """'better'/'worse' when the mean differs by more than 2 standard errors, else 'noise'."""
    if len(base) < 2 or len(other) < 2:
        return "n/a (1 seed)"
    diff = statistics.fmean(other) - statistics.fmean(base)
    se = (statistics.variance(base) / len(base) + statistics.variance(other) / len(other)) ** 0.5
    if abs(diff) <= 2 * se:
        return "within noise"
    return "better" if (diff > 0) == higher_is_better else "worse"


def table(task: Task, jobs: list[Job]) -> list[str]:
    fmt = "{:.2f}" if task.higher_is_better else "{:.3f}"
    early = early_epoch(jobs)
    lines = [
        f"| optimizer | variant | final {task.label} (mean ± std) | Δ vs base | verdict "
        + (f"| at epoch {early}: mean (Δ) " if early else "")
        + "| s / epoch | time ratio |",
        "|---|---|---|---|---|" + ("---|" if early else "") + "---|---|",
    ]
    for name in OPTIMIZERS:
        rows = sorted((j for j in jobs if j.optimizer == name), key=lambda j: j.s)
        base = next((j for j in rows if j.s == 0), None)
        for job in rows:
            values = final_values(job)
            mean, std = mean_std(values)
            cell = f"{fmt.format(mean)} ± {fmt.format(std)}" if values else f"failed ({job.status})"
            early_cell = ""
            if early and final_values(job, early):
                early_cell = fmt.format(statistics.fmean(final_values(job, early)))
            if job.s == 0 or base is None or not final_values(base):
                delta, judged, ratio = "", "", "1.00" if job.s == 0 else ""
            else:
                delta = signed(fmt, mean - statistics.fmean(final_values(base)))
                judged = verdict(final_values(base), values, task.higher_is_better)
                ratio = f"{epoch_time(job) / epoch_time(base):.2f}"
                if early_cell and final_values(base, early):
                    diff = statistics.fmean(final_values(job, early)) - statistics.fmean(
                        final_values(base, early)
                    )
                    early_cell += f" ({signed(fmt, diff)})"
            variant = "base" if job.s == 0 else f"XGrad-S{job.s}"
            lines.append(
                f"| {NAMES[name]} | {variant} | {cell} | {delta} | {judged} "
                + (f"| {early_cell} " if early else "")
                + f"| {epoch_time(job):.3f} | {ratio} |"
            )
    return lines


def findings(task: Task, jobs: list[Job]) -> list[str]:
    """One plain sentence per optimizer: where XGrad helped, where it did not."""
    out = []
    for name in OPTIMIZERS:
        rows = {j.s: j for j in jobs if j.task == task and j.optimizer == name}
        if 0 not in rows or not final_values(rows[0]):
            continue
        base = final_values(rows[0])
        judged = {
            s: verdict(base, final_values(j), task.higher_is_better)
            for s, j in sorted(rows.items())
            if s and final_values(j)
        }
        parts = []
        for kind in sorted(set(judged.values()), key=VERDICT_ORDER.index):
            parts.append(f"{kind}: " + ", ".join(f"S{s}" for s, v in judged.items() if v == kind))
        out.append(f"- {NAMES[name]}: " + "; ".join(parts) + ".")
    return out


def plot(task: Task, jobs: list[Job], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = [n for n in OPTIMIZERS if any(j.optimizer == n and j.task == task for j in jobs)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for job in sorted((j for j in jobs if j.task == task and j.optimizer == name),
                          key=lambda j: j.s):  # fmt: skip
            epochs = sorted({r["epoch"] for r in job.epochs})
            if not epochs:
                continue
            curves = [[r[task.metric] for r in job.epochs if r["epoch"] == e] for e in epochs]
            mean = [statistics.fmean(c) for c in curves]
            std = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in curves]
            label = "base" if job.s == 0 else f"S{job.s}"
            style = dict(color="black", linewidth=2.0) if job.s == 0 else dict(linewidth=1.2)
            line = ax.plot(epochs, mean, label=label, **style)[0]
            low = [m - d for m, d in zip(mean, std, strict=True)]
            high = [m + d for m, d in zip(mean, std, strict=True)]
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.12)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(NAMES[name])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if task.higher_is_better:
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 80.0))
    axes[0][0].set_ylabel(task.label)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{task.title}: base vs XGrad-S1..S4 (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def report(ctx: dict, jobs: list[Job], tasks: list[Task]) -> str:
    seeds = ", ".join(f"{t.name} {ctx['seeds'][t.name]}" for t in tasks)
    patch = (
        "the `xgrad-rewrite` CLI (`--s 1`)"
        if ctx["patch"] == "cli"
        else "fallback (two calls inserted by text; the codemod was not available)"
    )
    load = f"; load average at the end {ctx['load']} (shared machine)" if "load" in ctx else ""
    lines = [
        "# Convergence: base optimizer vs XGrad-S1..S4 on CPU",
        "",
        f"- command: `{ctx['command']}`",
        *(
            [f"- tables and plots rebuilt from its saved runs by `{ctx['rendered']}`"]
            if ctx.get("rendered")
            else []
        ),
        f"- machine: {ctx['machine']}; torch {ctx['torch']}, Python {platform.python_version()}",
        f"- date: {ctx['date']}; total wall time {ctx['wall_min']:.1f} min, "
        f"{ctx['parallel']} processes in parallel, 1 torch thread each{load}",
        f"- seeds: {seeds}; patched by: {patch}",
        "- every variant is the same patched copy of the plain script in "
        "`benchmarks/convergence_scripts/`, run with `XGRAD_S` = s (0 = the base optimizer)",
        "",
        "*Verdict*: the XGrad mean minus the base mean, called *better*/*worse* only when it",
        "exceeds two standard errors of the difference (seeds are few; small differences are",
        "noise). *At epoch k*: the mean a third of the way into training and its difference to",
        "the base, which shows how fast each variant converges. *s / epoch* is the fastest",
        "training epoch of the run (evaluation excluded), *time ratio* its ratio to the base's:",
        "wall-clock times from separate processes, only meaningful on a quiet machine; the",
        "overhead of XGrad itself is measured properly (interleaved, one process) by",
        "`benchmarks/runtime_overhead.py` and `benchmarks/gpu_cost.py`.",
    ]
    if ctx.get("note"):
        lines += ["", f"Note: {ctx['note']}"]
    for task in tasks:
        task_jobs = [j for j in jobs if j.task == task]
        args = shlex.join(task_jobs[0].command[2:-2]) if task_jobs else ""
        lines += [
            "",
            f"## {task.title}",
            "",
            f"Script: `benchmarks/convergence_scripts/{task.script}`, arguments `{args}` "
            "(plus `--optimizer`).",
            "",
            f"![learning curves](convergence_{task.name}.png)",
            "",
            *table(task, task_jobs),
            "",
            "Where XGrad helped (final metric, per s):",
            "",
            *findings(task, task_jobs),
        ]
    lines += ["", "## The patch the variants ran with", ""]
    for task in tasks:
        diff = ctx["diffs"][task.name].rstrip()
        lines += [f"`{task.script}`:", "", "```diff", diff, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- CLI ----------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tasks", default="digits,lstm", show_default=True, help="Comma-separated tasks.")
@click.option(
    "--optimizers", default=",".join(OPTIMIZERS), show_default=True, help="Comma-separated."
)
@click.option("--s", "s_text", default="0,1,2,3,4", show_default=True, help="s values; 0 = base.")
@click.option("--digits-seeds", default="0,1,2", show_default=True, help="Seeds, digits task.")
@click.option("--lstm-seeds", default="0,1,2", show_default=True, help="Seeds, LSTM task.")
@click.option("-j", "--jobs", "parallel", default=2, show_default=True, type=click.IntRange(1))
@click.option(
    "--patch",
    type=click.Choice(["cli", "fallback"]),
    default="cli",
    show_default=True,
    help="cli: the xgrad-rewrite command; fallback: insert the two calls by text.",
)
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    help="Do not train: rebuild the tables and plots from a saved convergence.json.",
)
@click.option("--note", help="A sentence for the report (e.g. how busy the machine was).")
@click.option("--quick", is_flag=True, help="Smoke run: 1 seed, 1 epoch, SGDM+Adam, s in {0,1}.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=HERE / "results",
    show_default="benchmarks/results",
)
def main(
    tasks: str,
    optimizers: str,
    s_text: str,
    digits_seeds: str,
    lstm_seeds: str,
    parallel: int,
    patch: str,
    from_json: pathlib.Path | None,
    note: str | None,
    quick: bool,
    out: pathlib.Path,
) -> None:
    """Train base vs XGrad-S1..S4 for each optimizer and seed; write tables and plots."""
    if from_json is not None:
        return rerender(from_json, out, note)
    chosen = [TASKS[t] for t in tasks.split(",") if t]
    names = [o for o in optimizers.split(",") if o]
    unknown = set(names) - set(OPTIMIZERS)
    if unknown:
        raise click.BadParameter(f"unknown {sorted(unknown)}", param_hint="--optimizers")
    s_values = int_list(s_text)
    seeds = {"digits": digits_seeds, "lstm": lstm_seeds}
    if quick:
        names, s_values, seeds = names[:2], [0, 1], {"digits": "0", "lstm": "0"}
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xgrad-convergence-") as tmp:
        workdir = pathlib.Path(tmp)
        diffs = prepare(chosen, workdir, patch)
        jobs = []
        for task in chosen:  # the LSTM's longer jobs first, so the short ones fill in at the end
            args = list(task.quick_args if quick else task.args) + ["--seeds", seeds[task.name]]
            script = str(workdir / task.script)
            for name in names:
                for s in s_values:
                    command = [sys.executable, script, *args, "--optimizer", name]
                    jobs.append(Job(task, name, s, command))
        jobs.sort(key=lambda j: j.task.name != "lstm")
        total = sum(_planned_epochs(j) for j in jobs)
        interval = 0.5 if sys.stderr.isatty() else 30.0  # a log file gets a line every 30 s
        with tqdm(total=total, unit="epoch", desc="convergence", mininterval=interval) as bar:
            run_jobs(jobs, parallel, bar)
    ctx = {
        "command": shlex.join(["python", "benchmarks/convergence.py", *sys.argv[1:]]),
        "machine": machine(),
        "torch": importlib.metadata.version("torch"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_min": (time.perf_counter() - started) / 60,
        "load": "{:.1f}, {:.1f}, {:.1f}".format(*os.getloadavg()),
        "parallel": parallel,
        "seeds": seeds,
        "patch": patch,
        "diffs": diffs,
        "note": note,
    }
    write_outputs(ctx, jobs, chosen, out)
    failed = [j for j in jobs if j.status != "ok"]
    click.echo(f"wrote {out / 'convergence.md'} ({len(jobs) - len(failed)}/{len(jobs)} runs ok)")
    if failed:
        sys.exit(1)


def write_outputs(
    ctx: dict, jobs: list[Job], chosen: list[Task], out: pathlib.Path, save_runs: bool = True
) -> None:
    for task in chosen:
        plot(task, jobs, out / f"convergence_{task.name}.png")
    (out / "convergence.md").write_text(report(ctx, jobs, chosen), "utf-8")
    if not save_runs:
        return
    raw = {
        "context": ctx,
        "runs": [
            {"task": j.task.name, "optimizer": j.optimizer, "s": j.s, "status": j.status,
             "wall_s": j.wall_s, "command": j.command, "epochs": j.epochs}
            for j in jobs
        ],
    }  # fmt: skip
    (out / "convergence.json").write_text(json.dumps(raw, indent=1) + "\n", "utf-8")


def rerender(path: pathlib.Path, out: pathlib.Path, note: str | None = None) -> None:
    """Rebuild the tables and plots from a saved ``convergence.json`` without training again."""
    raw = json.loads(path.read_text("utf-8"))
    ctx = raw["context"]
    if note:
        ctx["note"] = note
    chosen = [task for name, task in TASKS.items() if any(r["task"] == name for r in raw["runs"])]
    if isinstance(ctx["seeds"], str):  # written before seeds/patch/diffs were stored as data
        ctx["seeds"] = dict(part.split(" ", 1) for part in ctx["seeds"].split(", "))
        ctx["patch"] = "cli" if "CLI" in ctx["patch"] else "fallback"
    if "diffs" not in ctx:
        with tempfile.TemporaryDirectory(prefix="xgrad-convergence-") as tmp:
            ctx["diffs"] = prepare(chosen, pathlib.Path(tmp), ctx["patch"])
    jobs = []
    for r in raw["runs"]:
        task = TASKS[r["task"]]
        command = r.get("command") or [
            "python", task.script, *task.args, "--seeds", ctx["seeds"][task.name],
            "--optimizer", r["optimizer"],
        ]  # fmt: skip
        jobs.append(
            Job(task, r["optimizer"], r["s"], command, r["epochs"], r["status"], r["wall_s"])
        )
    out.mkdir(parents=True, exist_ok=True)
    words = ["python", "benchmarks/convergence.py", "--from-json", str(path)]
    ctx["rendered"] = shlex.join(words) + (" --note NOTE (below)" if note else "")
    write_outputs(ctx, jobs, chosen, out, save_runs=False)  # the saved runs stay as they were
    click.echo(f"rewrote {out / 'convergence.md'} from {path}")


def _planned_epochs(job: Job) -> int:
    """Epochs x seeds the job will report, read from its own command line."""
    cmd = job.command
    return int(cmd[cmd.index("--epochs") + 1]) * len(cmd[cmd.index("--seeds") + 1].split(","))


if __name__ == "__main__":
    main()
