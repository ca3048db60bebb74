"""How the codemod's cost grows with the file: many top-level loops rebinding the same names.

A notebook exported as a script (or a long experiment file) repeats the same cell: build
``model`` and ``optimizer``, train, print. Every loop rebinds the same names, so a name-based
analysis that looks at every binding of ``optimizer`` for every step is quadratic (or worse);
this benchmark keeps that honest. For 60/120/240 such loops (and the same loops with distinct
names, the easy case) it measures, side by side in one run:

- ``analysis``: ``codemod.rewrite`` in this process (ast analysis and plan; what ``--check`` of
  an unpatched file costs past interpreter start-up);
- ``patch``: the same plus the patched text (libcst parse and edit);
- ``check CLI`` / ``black CLI``: ``xgrad-rewrite --check --no-cache`` and ``black --check`` on the
  same file with an empty black cache, whole processes (what a pre-commit hook feels).

    .venv/bin/python benchmarks/analysis_scaling.py  # -> benchmarks/results/analysis_scaling.md
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `machine`

from machine import cpu_model  # noqa: E402

from xgrad_rewrite.codemod import Options, rewrite  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.executable).parent
SIZES = (60, 120, 240)

CELL = """
# cell {i}
model{suffix} = nn.Linear(3, 1)
optimizer{suffix} = torch.optim.SGD(model{suffix}.parameters(), lr=0.1)
criterion = nn.MSELoss()
for x, y in loader:
    optimizer{suffix}.zero_grad()
    out = model{suffix}(x)
    loss = criterion(out, y)
    loss.backward()
    optimizer{suffix}.step()
print(loss.item())
"""


def make_file(loops: int, same_names: bool) -> str:
    head = (
        "import torch\nimport torch.nn as nn\n\nloader = [(torch.randn(4, 3), torch.randn(4, 1))]\n"
    )
    cells = (CELL.format(i=i, suffix="" if same_names else f"_{i}") for i in range(loops))
    return head + "".join(cells)


def best_of(reps: int, run) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli(command: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(command, capture_output=True, env=env, check=False)


def measure(loops: int, same: bool, tmp: pathlib.Path, reps: int) -> tuple:
    """One row: (loops, same names?, lines, analysis, patch, check CLI, black CLI) seconds."""
    text = make_file(loops, same)
    path = tmp / f"loops_{loops}_{same}.py"
    path.write_text(text)
    analysis = best_of(reps, lambda: rewrite(text, Options()))
    patch = best_of(reps, lambda: rewrite(text, Options()).text)
    check_command = [str(BIN / "xgrad-rewrite"), "--check", "--no-cache", str(path)]
    check = best_of(reps, lambda: cli(check_command))

    def black() -> None:
        env = {**os.environ, "BLACK_CACHE_DIR": tempfile.mkdtemp(dir=tmp)}  # a cold cache
        cli([str(BIN / "black"), "--check", "-q", str(path)], env)

    return (loops, same, len(text.splitlines()), analysis, patch, check, best_of(reps, black))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument(
        "--out", type=pathlib.Path, default=HERE / "results" / "analysis_scaling.md"
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for loops in args.sizes:
            for same in (True, False):
                rows.append(measure(loops, same, pathlib.Path(tmp), args.reps))
                print(rows[-1], flush=True)

    lines = [
        "# Codemod cost against file size (many loops rebinding one name)",
        "",
        f"Command: `.venv/bin/python benchmarks/analysis_scaling.py --reps {args.reps}`  ",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "median of the repetitions, all rows measured in one run.",
        "",
        "| loops | names | lines | analysis (s) | analysis + patched text (s) "
        "| `xgrad-rewrite --check` CLI (s) | `black --check` CLI, cold (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for loops, same, n, analysis, patch, check, black_time in rows:
        names = "same in every loop" if same else "distinct"
        figures = " | ".join(f"{x:.2f}" for x in (analysis, patch, check, black_time))
        lines.append(f"| {loops} | {names} | {n} | {figures} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
