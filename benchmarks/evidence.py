"""Is XGrad more than a learning-rate change? Best-against-best, tuned, with confidence intervals.

For three models (a CNN on scikit-learn's digits, a character-level LSTM and a small decoder-only
transformer language model on the Python standard library's own source; nothing is downloaded)
and three base optimizers (SGDM, Adam, AdamW), this:

1. for ``gpt_flat`` (the transformer with AdamW, trained until flat) first searches the step
   count: doubled from the ``gpt`` task's until more training buys less than
   ``--flat-threshold`` (see ``Plan.factor``);
2. sweeps the learning rate over the default x {0.25, 0.5, 1, 2, 4} (extended past an end where
   a best lies) for the base optimizer and for XGrad-S1 and XGrad-S2 (``--sweep-seeds`` seeds
   per point);
3. picks each variant's best learning rate by *validation* loss (mean over the sweep seeds);
4. reruns every winner with ``--seeds`` seeds and reports the *test* metric, XGrad minus base,
   with a 95 % confidence interval (Welch), and also XGrad at the base's best learning rate;
5. measures XGrad's per-step cost on each model in one process, side by side with the base
   (interleaved blocks of steps), and turns "steps to reach the base's best validation loss" into
   wall-clock time to target;
6. trains the digits and LSTM winners ``--long-factors`` times longer, to tell early speed from
   final quality.

    python benchmarks/evidence.py                  # the full CPU run (see evidence.md for its time)
    python benchmarks/evidence.py --quick          # tiny end-to-end smoke run, seconds
    python benchmarks/evidence.py --size large --device cuda   # adds rows marked with the GPU

Runs go to a JSON-lines file keyed by their whole configuration (``evidence_runs.jsonl`` in
``--out``); an interrupted invocation resumes where it stopped, and finished runs are never redone.
Writes ``evidence.md``, ``evidence.json``, ``evidence.png`` (learning-rate sensitivity) and
``evidence_curves.png`` (validation curves of the winners) into ``--out``.

XGrad is applied the way the patched scripts do it: ``xgrad.predict(optimizer, s)`` before the
forward, ``xgrad.restore(optimizer)`` after the backward and before clipping and the step, with the
runtime from this source tree.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import math
import multiprocessing
import os
import pathlib
import platform
import shlex
import signal
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # for `machine`
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # the runtime from this source tree

from machine import cpu_model  # noqa: E402

OPTIMIZERS = ["sgdm", "adam", "adamw"]
NAMES = {"sgdm": "SGDM", "adam": "Adam", "adamw": "AdamW"}
VARIANTS = [0, 1, 2]  # XGRAD s; 0 = the base optimizer
VARIANT_NAMES = {0: "base", 1: "XGrad-S1", 2: "XGrad-S2"}
LR_MULTS = [0.25, 0.5, 1.0, 2.0, 4.0]
TASKS = ["digits", "lstm", "gpt", "gpt_flat"]
TITLES = {
    "digits": "CNN on scikit-learn digits",
    "lstm": "char-level LSTM LM (stdlib source)",
    "gpt": "char-level decoder-only transformer LM (stdlib source)",
    "gpt_flat": "char-level transformer LM, trained until flat (stdlib source)",
}
# A task's model, data and recipe: gpt_flat is the transformer trained as long as its validation
# loss keeps falling (its step count is searched first, see Plan.factor), with Adam and AdamW:
# 8x the steps of gpt at every point of the protocol; SGDM's is left out to fit a 2-core machine.
MODEL = {"digits": "digits", "lstm": "lstm", "gpt": "gpt", "gpt_flat": "gpt"}
TASK_OPTIMIZERS = {"gpt_flat": ["adam", "adamw"]}
FLAT_SEARCH = {"gpt_flat"}  # tasks whose steps double until the base's validation loss flattens
FLAT_PILOT = "adamw"  # the recipe's optimizer decides the step count, for every optimizer
# The current defaults (digits and LSTM: those of benchmarks/convergence_scripts/).
DEFAULT_LR = {
    "digits": {"sgdm": 0.05, "adam": 1e-3, "adamw": 1e-3},
    "lstm": {"sgdm": 1.0, "adam": 1e-2, "adamw": 1e-2},
    "gpt": {"sgdm": 0.3, "adam": 3e-3, "adamw": 3e-3},
}
DEFAULT_LR["gpt_flat"] = DEFAULT_LR["gpt"]
WEIGHT_DECAY = {"digits": 1e-2, "lstm": 1e-2, "gpt": 0.1}  # AdamW only (SGDM digits: 5e-4)
WEIGHT_DECAY["gpt_flat"] = WEIGHT_DECAY["gpt"]

# Model, data and schedule sizes. `steps` is the whole run (the cosine schedule spans it);
# `evals` is how many validation points the curve gets.
SIZES: dict[str, dict[str, dict]] = {
    "quick": {
        "digits": dict(batch=32, steps=24, evals=4, train=256),
        "lstm": dict(batch=8, seq=32, embed=16, hidden=32, train_chars=20_000, eval_chars=2_000,
                     steps=16, evals=4, clip=1.0),
        "gpt": dict(batch=8, seq=32, layers=1, width=32, heads=2, train_chars=20_000,
                    eval_chars=2_000, steps=16, evals=4, warmup=4, clip=1.0),
    },
    "small": {
        "digits": dict(batch=32, steps=600, evals=20, train=1078),
        "lstm": dict(batch=32, seq=64, embed=32, hidden=128, train_chars=300_000,
                     eval_chars=10_000, steps=400, evals=20, clip=1.0),
        "gpt": dict(batch=16, seq=64, layers=2, width=64, heads=4, train_chars=300_000,
                    eval_chars=10_000, steps=600, evals=20, warmup=30, clip=1.0),
    },
    "large": {
        "digits": dict(batch=32, steps=3000, evals=30, train=1078),
        "lstm": dict(batch=64, seq=128, embed=64, hidden=512, train_chars=340_000,
                     eval_chars=20_000, steps=6000, evals=30, clip=1.0),
        "gpt": dict(batch=64, seq=128, layers=6, width=256, heads=8, train_chars=340_000,
                    eval_chars=20_000, steps=6000, evals=30, warmup=300, clip=1.0),
    },
}  # fmt: skip
for _size in SIZES.values():  # the same transformer, its step count searched (more curve points)
    _size["gpt_flat"] = dict(_size["gpt"], evals=2 * _size["gpt"]["evals"])
# The char-LSTM's files: stable, plain-Python modules of every CPython 3.10+.
SOURCES = [
    "argparse.py", "textwrap.py", "shlex.py", "fractions.py", "dataclasses.py", "heapq.py",
    "bisect.py", "string.py", "calendar.py", "difflib.py", "csv.py", "fnmatch.py",
]  # fmt: skip
VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))  # everything else maps to index 0


# --- data ---------------------------------------------------------------------------------------


@functools.cache
def digits_data(train: int):
    """A fixed split of the 1797 digits: ``train`` / 359 validation / 360 test (same every run)."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    parts = order[:train], order[1078 : 1078 + 359], order[1078 + 359 :]
    return tuple((images[p], labels[p]) for p in parts)


@functools.cache
def text_data(train_chars: int, eval_chars: int):
    """The sources as indices: the first ``train_chars`` train; validation and test are two
    disjoint blocks of ``eval_chars`` at the end of the text (never trained on)."""
    import sysconfig

    import torch

    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / name).read_text(encoding="utf-8") for name in SOURCES)
    if len(text) < train_chars + 2 * eval_chars:
        raise SystemExit(f"only {len(text)} characters of text, need more")
    lookup = {c: i for i, c in enumerate(VOCAB)}
    data = torch.tensor([lookup.get(c, 0) for c in text], dtype=torch.long)
    n = len(data)
    return data[:train_chars], data[n - 2 * eval_chars : n - eval_chars], data[n - eval_chars :]


# --- models -------------------------------------------------------------------------------------


def build_model(task: str, p: dict):
    import torch.nn as nn
    import torch.nn.functional as F

    if task == "digits":  # benchmarks/convergence_scripts/digits_cnn.py's Net

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
                self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
                self.fc1 = nn.Linear(32 * 4 * 4, 64)
                self.fc2 = nn.Linear(64, 10)

            def forward(self, x):
                x = F.relu(self.conv1(x))
                x = F.max_pool2d(F.relu(self.conv2(x)), 2)
                return self.fc2(F.relu(self.fc1(x.flatten(1))))

        return Net()
    if task == "lstm":  # benchmarks/convergence_scripts/char_lstm.py's CharLSTM

        class CharLSTM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(len(VOCAB), p["embed"])
                self.lstm = nn.LSTM(p["embed"], p["hidden"], batch_first=True)
                self.head = nn.Linear(p["hidden"], len(VOCAB))

            def forward(self, x):
                return self.head(self.lstm(self.embed(x))[0])

        return CharLSTM()
    return TinyGPT(len(VOCAB), p["seq"], p["layers"], p["width"], p["heads"])


def _gpt_classes():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        """Pre-LayerNorm transformer block: causal self-attention, then a GELU MLP (4x)."""

        def __init__(self, width, heads):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.fc, self.out = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class TinyGPT(nn.Module):
        """Decoder-only character LM: token + learned position embeddings, blocks, LayerNorm."""

        def __init__(self, vocab, seq, layers, width, heads):
            super().__init__()
            self.tok = nn.Embedding(vocab, width)
            self.pos = nn.Parameter(torch.zeros(1, seq, width))
            self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
            self.ln = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab)
            for name, param in self.named_parameters():
                if name.endswith("weight") and param.dim() == 2:
                    nn.init.normal_(param, std=0.02)
                elif name.endswith("bias"):
                    nn.init.zeros_(param)

        def forward(self, idx):
            x = self.tok(idx) + self.pos[:, : idx.size(1)]
            return self.head(self.ln(self.blocks(x)))

    return TinyGPT


def TinyGPT(*args):  # noqa: N802  (a class factory: torch is imported lazily)
    return _gpt_classes()(*args)


def build_optimizer(task: str, name: str, model, lr: float):
    import torch

    if name == "sgdm":
        wd = 5e-4 if task == "digits" else 0.0
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if MODEL[task] == "gpt":  # the usual recipe: no decay on biases and LayerNorm gains
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        rest = [p for n, p in model.named_parameters() if p.dim() < 2]
        groups = [
            dict(params=decay, weight_decay=WEIGHT_DECAY[task]),
            dict(params=rest, weight_decay=0.0),
        ]
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY[task])


def lr_lambda(task: str, p: dict):
    """Cosine decay over the run; the transformer adds linear warmup and decays to 10 %."""
    steps, warmup = p["steps"], p.get("warmup", 0)
    floor = 0.1 if MODEL[task] == "gpt" else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Batches:
    """Training batches: epochs of shuffled digits, or random windows of the text."""

    def __init__(self, task: str, p: dict, seed: int, device):
        import torch

        self.task, self.p, self.device = task, p, device
        self.gen = torch.Generator().manual_seed(seed)
        if task == "digits":
            (self.x, self.y), _, _ = digits_data(p["train"])
            self.order, self.pos = torch.empty(0, dtype=torch.long), 0
        else:
            self.data = text_data(p["train_chars"], p["eval_chars"])[0]

    def __next__(self):
        import torch

        p = self.p
        if self.task == "digits":
            if self.pos + p["batch"] > len(self.order):
                self.order, self.pos = torch.randperm(len(self.y), generator=self.gen), 0
            idx = self.order[self.pos : self.pos + p["batch"]]
            self.pos += p["batch"]
            return self.x[idx].to(self.device), self.y[idx].to(self.device)
        starts = torch.randint(0, len(self.data) - p["seq"] - 1, (p["batch"],), generator=self.gen)
        rows = torch.stack([self.data[s : s + p["seq"] + 1] for s in starts.tolist()])
        return rows[:, :-1].to(self.device), rows[:, 1:].to(self.device)


def loss_of(logits, target):
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1))


def evaluate(task: str, p: dict, model, split: int, device) -> dict:
    """Mean cross-entropy (nats per example / per character) on validation (1) or test (2)."""
    import torch

    model.eval()
    with torch.no_grad():
        if task == "digits":
            x, y = digits_data(p["train"])[split]
            logits = model(x.to(device))
            y = y.to(device)
            out = dict(
                loss=loss_of(logits, y).item(),
                acc=100.0 * (logits.argmax(1) == y).float().mean().item(),
            )
        else:
            data = text_data(p["train_chars"], p["eval_chars"])[split]
            usable = (len(data) - 1) // p["seq"] * p["seq"]
            x = data[:usable].view(-1, p["seq"]).to(device)
            y = data[1 : usable + 1].view(-1, p["seq"]).to(device)
            total = sum(
                loss_of(model(xb), yb).item() * len(xb)
                for xb, yb in zip(x.split(256), y.split(256), strict=True)
            )
            out = dict(loss=total / len(x))
    model.train()
    return out


# --- one run (in a worker process) --------------------------------------------------------------


def setup(device: str) -> tuple:
    import torch

    os.environ.pop("XGRAD_S", None)  # the runtime reads these at every predict: not here
    os.environ.pop("XGRAD_DISABLE", None)
    if device == "cpu":
        torch.set_num_threads(1)
    return torch, torch.device(device)


def train_run(cfg: dict) -> dict:
    """Train one (task, optimizer, s, lr, seed); return its curve and final metrics."""
    torch, device = setup(cfg["device"])
    import xgrad_rewrite.runtime as xgrad

    task, p, s = cfg["task"], cfg["params"], cfg["s"]
    torch.manual_seed(cfg["seed"])
    model = build_model(task, p).to(device)
    optimizer = build_optimizer(task, cfg["optimizer"], model, cfg["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(task, p))
    batches = Batches(task, p, cfg["seed"], device)
    every = max(1, p["steps"] // p["evals"])
    curve, diverged, train_s = [], False, 0.0
    for step in range(1, p["steps"] + 1):
        start = time.perf_counter()
        inputs, target = next(batches)
        optimizer.zero_grad(set_to_none=True)
        if s:
            xgrad.predict(optimizer, s=s)
        loss = loss_of(model(inputs), target)
        loss.backward()
        if s:
            xgrad.restore(optimizer)
        if p.get("clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), p["clip"])
        optimizer.step()
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s += time.perf_counter() - start
        if not math.isfinite(loss.item()):
            diverged = True
            break
        if step % every == 0 or step == p["steps"]:
            valid = evaluate(task, p, model, 1, device)["loss"]
            if not math.isfinite(valid):
                diverged = True
                break
            curve.append([step, valid])
    result = dict(curve=curve, diverged=diverged, train_s=train_s, steps=p["steps"])
    if not diverged:
        result["valid"] = evaluate(task, p, model, 1, device)
        result["test"] = evaluate(task, p, model, 2, device)
    return result


def cost_run(cfg: dict) -> dict:
    """Per-step time of base, XGrad-S1 and XGrad-S2 on the same model, in one process.

    Three identical models and optimizers; blocks of ``block`` steps, the order rotated every
    round; the fastest block per variant (the least disturbed by other load on a shared machine;
    the median is kept too). On the CPU a block is timed by this process's CPU time (one torch
    thread: the work done, which other processes on a shared machine barely change); on a GPU
    by wall-clock time after a synchronize. The ratio is what XGrad adds to a whole training
    step (forward, backward, clip, step) of this model at this size.
    """
    torch, device = setup(cfg["device"])
    import xgrad_rewrite.runtime as xgrad

    task, p = cfg["task"], cfg["params"]
    arms = {}
    for s in VARIANTS:
        torch.manual_seed(0)
        model = build_model(task, p).to(device)
        opt = build_optimizer(task, cfg["optimizer"], model, cfg["lr"])
        arms[s] = (model, opt, Batches(task, p, 0, device))

    def steps(s: int, n: int) -> None:
        model, opt, batches = arms[s]
        for _ in range(n):
            inputs, target = next(batches)
            opt.zero_grad(set_to_none=True)
            if s:
                xgrad.predict(opt, s=s)
            loss_of(model(inputs), target).backward()
            if s:
                xgrad.restore(opt)
            if p.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), p["clip"])
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    clock = time.process_time if cfg.get("clock") == "process" else time.perf_counter
    for s in VARIANTS:
        steps(s, 3)  # warm-up; also gives every optimizer its state
    times: dict[int, list[float]] = {s: [] for s in VARIANTS}
    for r in range(cfg["rounds"]):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        for s in order if r % 2 == 0 else order[::-1]:
            start = clock()
            steps(s, cfg["block"])
            times[s].append((clock() - start) / cfg["block"])
    ms = {str(s): 1000 * min(t) for s, t in times.items()}
    median = {str(s): 1000 * statistics.median(t) for s, t in times.items()}
    return dict(ms_per_step=ms, ms_per_step_median=median)


def execute(cfg: dict) -> dict:
    started = time.perf_counter()
    out = cost_run(cfg) if cfg["kind"] == "cost" else train_run(cfg)
    out["wall_s"] = time.perf_counter() - started
    return out


# --- the plan and the cache ---------------------------------------------------------------------


def run_key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def train_cfg(size, device, task, opt, s, mult, seed) -> dict:
    return dict(
        kind="train",
        size=size,
        device=device,
        task=task,
        optimizer=opt,
        s=s,
        lr_mult=mult,
        lr=DEFAULT_LR[task][opt] * mult,
        seed=seed,
        params=SIZES[size][task],
    )


def long_cfg(cfg: dict, factor: int) -> dict:
    """The same run ``factor`` times longer (steps, warmup; as many evaluation points)."""
    params = dict(cfg["params"], steps=cfg["params"]["steps"] * factor)
    if "warmup" in params:
        params["warmup"] *= factor
    return dict(cfg, params=params)


class Store:
    """The JSON-lines results file: one line per finished run, keyed by its configuration."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.runs: dict[str, dict] = {}
        self.sessions: list[dict] = []
        if path.exists():
            for line in path.read_text("utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut off by an interruption
                    continue
                if record.get("kind") == "session":
                    self.sessions.append(record)
                else:
                    self.runs[run_key(record["config"])] = record

    def get(self, cfg: dict) -> dict | None:
        return self.runs.get(run_key(cfg))

    def add(self, record: dict) -> None:
        if record.get("kind") == "session":
            self.sessions.append(record)
        else:
            self.runs[run_key(record["config"])] = record
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class InlinePool:
    """``--jobs 0``: run in this process, one after the other (debugging, tests)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


def run_all(cfgs: list[dict], store: Store, pool, desc: str) -> int:
    """Run the configurations not in the store yet on ``pool``; return how many ran."""
    from tqdm import tqdm

    todo, seen = [], set()
    for cfg in cfgs:
        key = run_key(cfg)
        if store.get(cfg) is None and key not in seen:
            todo.append(cfg)
            seen.add(key)
    if not todo:
        return 0
    # Longest first: the short ones fill in at the end.
    weight = {"gpt_flat": 4, "gpt": 3, "lstm": 2, "digits": 1}
    todo.sort(key=lambda c: -weight[c["task"]])
    interval = 0.5 if sys.stderr.isatty() else 30.0  # a log file gets a line every 30 s
    bar = tqdm(total=len(todo), desc=desc, unit="run", mininterval=interval, smoothing=0.05)
    pending = {pool.submit(execute, cfg): cfg for cfg in todo}
    try:
        collect(pending, store, bar)
    except BaseException:  # interrupted: drop the queue and the runs in flight, keep the rest
        for future in pending:
            future.cancel()
        for worker in multiprocessing.active_children():  # else the pool waits for them
            worker.terminate()
        raise
    finally:
        bar.close()
    return len(todo)


def collect(pending: dict, store: Store, bar) -> None:
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            cfg = pending.pop(future)
            store.add(dict(config=cfg, result=future.result()))
            bar.set_postfix_str(
                f"{cfg['task']}/{cfg['optimizer']}/s={cfg.get('s', '-')}"
                f"/lr x{cfg.get('lr_mult', '-')}/seed {cfg.get('seed', '-')}"
            )
            bar.update(1)


# --- analysis -----------------------------------------------------------------------------------


def score(record: dict | None) -> float:
    """Final validation loss, +inf for a diverged (or missing) run."""
    if record is None or record["result"].get("diverged"):
        return math.inf
    return record["result"]["valid"]["loss"]


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(b) - mean(a) and its 95 % confidence interval (Welch's t)."""
    from scipy import stats

    diff = statistics.fmean(b) - statistics.fmean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * se
    return diff, diff - half, diff + half


def mean_curve(records: list[dict]) -> list[tuple[int, float]]:
    curves = [r["result"]["curve"] for r in records if not r["result"].get("diverged")]
    if not curves or len(curves) < len(records):
        return []
    n = min(len(c) for c in curves)
    return [(curves[0][i][0], statistics.fmean(c[i][1] for c in curves)) for i in range(n)]


def steps_to(curve: list[tuple[int, float]], target: float) -> float | None:
    """First step at which the (seed-mean) validation curve reaches ``target``, interpolated
    linearly between evaluation points; None if it never does."""
    previous = (0, math.inf)
    for step, value in curve:
        if value <= target:
            if math.isfinite(previous[1]) and previous[1] > value:
                frac = (previous[1] - target) / (previous[1] - value)
                return previous[0] + frac * (step - previous[0])
            return float(step)
        previous = (step, value)
    return None


class Plan:
    """The runs one invocation needs, and what the finished ones say."""

    def __init__(self, args, store: Store):
        self.size, self.device, self.store = args.size, args.device, store
        self.tasks, self.optimizers = args.tasks, args.optimizers
        self.mults, self.sweep_seeds, self.seeds = args.lr_mults, args.sweep_seeds, args.seeds
        self.rounds, self.block = args.cost_rounds, args.cost_block
        self.extend = args.extend
        self.long_tasks, self.long_factors = args.long_tasks, args.long_factors
        self.long_optimizers = args.long_optimizers
        self.band_seeds = [x for x in args.band_seeds if x not in args.sweep_seeds]
        self.long_seeds = args.long_seeds
        self.flat_max, self.flat_below = args.flat_max_factor, args.flat_threshold

    def cfg(self, task, opt, s, mult, seed):
        factor = self.factor(task)
        if factor is None:
            raise RuntimeError(f"{task}: its step count is not decided yet (run budget() first)")
        return long_cfg(train_cfg(self.size, self.device, task, opt, s, mult, seed), factor)

    def pairs(self, tasks=None):
        return [
            (t, o)
            for t in tasks or self.tasks
            for o in self.optimizers
            if o in TASK_OPTIMIZERS.get(t, OPTIMIZERS)
        ]

    # The step count of a FLAT_SEARCH task: the shortest of steps x 1, 2, 4, ... (up to
    # --flat-max-factor) past which more training buys less than --flat-threshold: the base
    # optimizer at the default lr, seed 0, either ends with a validation loss that fell less than
    # that over the last quarter of its run, or a run twice as long ends less than that lower
    # (it overfits, or the cosine's annealing is all that is left). The schedule (warmup,
    # cosine) stretches with it; every run of the task then uses it.

    def factors(self) -> list[int]:
        return [2**k for k in range(int(math.log2(self.flat_max)) + 1)]

    def pilot(self, task, factor) -> dict:
        return long_cfg(train_cfg(self.size, self.device, task, FLAT_PILOT, 0, 1.0, 0), factor)

    def is_flat(self, record: dict) -> bool:
        flat = flatness(record["result"]["curve"])
        return not record["result"].get("diverged") and flat is not None and flat < self.flat_below

    def gains(self, record: dict, longer: dict) -> bool:
        """Does the twice-as-long run end lower by at least --flat-threshold?"""
        if longer["result"].get("diverged"):
            return False
        if record["result"].get("diverged"):
            return True
        now, then = record["result"]["valid"]["loss"], longer["result"]["valid"]["loss"]
        return then < now * (1 - self.flat_below)

    def factor(self, task) -> int | None:
        """The task's step multiple, None while the search has not decided it."""
        if task not in FLAT_SEARCH or not self.pairs([task]):
            return 1
        factors = self.factors()
        for i, factor in enumerate(factors):
            record = self.store.get(self.pilot(task, factor))
            if record is None:
                return None
            if self.is_flat(record) or i + 1 == len(factors):
                return factor  # the last: the cap (the report says whether it was flat)
            longer = self.store.get(self.pilot(task, factors[i + 1]))
            if longer is None:
                return None
            if not self.gains(record, longer):
                return factor
        raise AssertionError("unreachable")

    def budget(self, task) -> list[dict]:
        """The search's next runs: the next two candidates (one per core), none once decided."""
        if self.factor(task) is not None:
            return []
        todo = [self.pilot(task, f) for f in self.factors()]
        return [cfg for cfg in todo if self.store.get(cfg) is None][:2]

    def budget_summary(self, task) -> list[dict]:
        """The search's runs, up to the one after the chosen (which showed it was enough)."""
        out, chosen = [], self.factor(task)
        for factor in self.factors():
            record = self.store.get(self.pilot(task, factor))
            if record is None or (chosen is not None and factor > 2 * chosen):
                break
            result = record["result"]
            out.append(dict(factor=factor, steps=record["config"]["params"]["steps"],
                            flat=flatness(result["curve"]), diverged=result.get("diverged", False),
                            valid=result.get("valid", {}).get("loss"),
                            chosen=factor == chosen))  # fmt: skip
        return out

    def sweep(self, tasks=None) -> list[dict]:
        return self.grid_runs(tasks, self.sweep_seeds)

    def grid_runs(self, tasks, seeds) -> list[dict]:
        """Every variant at every point of its grid, with these seeds."""
        return [
            self.cfg(t, o, s, m, seed)
            for t, o in self.pairs(tasks)
            for s in VARIANTS
            for m in self.grid(t, o)
            for seed in seeds
        ]

    def grid(self, task, opt) -> list[float]:
        """The lr multipliers of one (task, optimizer): ``--lr-mults``, extended by a factor 2
        beyond an end where some variant's best lies (at most ``--extend`` times each way), so
        that no variant's best is the edge of the grid it was given. Points not run yet count
        as +inf, so the grid grows one step per finished sweep."""
        mults = sorted(self.mults)
        for _ in range(self.extend):
            bests = {self._best(task, opt, s, mults) for s in VARIANTS}
            grown = False
            if mults[-1] in bests:
                mults, grown = mults + [mults[-1] * 2], True
            if mults[0] in bests:
                mults, grown = [mults[0] / 2] + mults, True
            if not grown:
                break
        return mults

    def at_edge(self, task, opt, s) -> bool:
        grid, best = self.grid(task, opt), self.best_mult(task, opt, s)
        return best is not None and len(grid) > 1 and best in (grid[0], grid[-1])

    def sweep_mean(self, task, opt, s, mult) -> float:
        values = [
            score(self.store.get(self.cfg(task, opt, s, mult, seed))) for seed in self.sweep_seeds
        ]
        return statistics.fmean(values) if all(map(math.isfinite, values)) else math.inf

    def best_mult(self, task, opt, s) -> float | None:
        return self._best(task, opt, s, self.grid(task, opt))

    def _best(self, task, opt, s, mults) -> float | None:
        scored = [(self.sweep_mean(task, opt, s, m), m) for m in mults]
        scored = [x for x in scored if math.isfinite(x[0])]
        return min(scored)[1] if scored else None

    def winners(self, tasks=None) -> list[dict]:
        """Each variant at its own best lr, and XGrad at the base's best lr, ``seeds`` seeds."""
        cfgs = []
        for task, opt in self.pairs(tasks):
            base_mult = self.best_mult(task, opt, 0)
            for s in VARIANTS:
                for mult in {self.best_mult(task, opt, s), base_mult} - {None}:
                    cfgs += [self.cfg(task, opt, s, mult, seed) for seed in self.seeds]
        return cfgs

    def bands(self, tasks=None) -> list[dict]:
        """More seeds at every sweep point, for the sensitivity plot's bands only (the lr is
        chosen on the sweep seeds, before these run)."""
        return self.grid_runs(tasks, self.band_seeds)

    def long(self, tasks, factor: int) -> list[dict]:
        """The winners (each variant at its own best lr) trained ``factor`` times longer."""
        cfgs = []
        for task, opt in self.pairs(tasks):
            if task not in self.long_tasks or opt not in self.long_optimizers:
                continue
            for s in VARIANTS:
                mult = self.best_mult(task, opt, s)
                if mult is not None:
                    cfgs += [
                        long_cfg(self.cfg(task, opt, s, mult, seed), factor)
                        for seed in self.long_seeds
                    ]
        return cfgs

    def costs(self) -> list[dict]:
        return [
            dict(
                kind="cost",
                size=self.size,
                device=self.device,
                task=t,
                optimizer=o,
                lr=DEFAULT_LR[t][o],
                rounds=self.rounds,
                block=self.block,
                stat="min",
                clock="process" if self.device == "cpu" else "wall",
                params=SIZES[self.size][t],
            )
            for t, o in self.pairs()
        ]

    def finals(self, task, opt, s, mult) -> list[dict]:
        records = [self.store.get(self.cfg(task, opt, s, mult, seed)) for seed in self.seeds]
        return [r for r in records if r is not None]

    def summary(self) -> dict:
        """Everything the report shows, as data (also written to evidence.json)."""
        rows = []
        for task, opt in self.pairs():
            if self.factor(task) is None:  # cut short before its step count was decided
                continue
            cost = self.store.get(self.costs()[self.pairs().index((task, opt))])
            ms = cost["result"]["ms_per_step"] if cost else None
            base_mult = self.best_mult(task, opt, 0)
            params = self.cfg(task, opt, 0, 1.0, 0)["params"]  # the task's, steps decided
            row = dict(
                task=task,
                optimizer=opt,
                steps=params["steps"],
                params=params,
                default_lr=DEFAULT_LR[task][opt],
                ms_per_step=ms,
                variants={},
            )
            sweep = {
                str(s): {str(m): self.sweep_mean(task, opt, s, m) for m in self.grid(task, opt)}
                for s in VARIANTS
            }
            row["sweep_valid_loss"] = sweep
            base_final = self.finals(task, opt, 0, base_mult) if base_mult else []
            base_curve = mean_curve(base_final)
            target = min((v for _, v in base_curve), default=None)
            row["target_valid_loss"] = target
            for s in VARIANTS:
                mult = self.best_mult(task, opt, s)
                entry = dict(
                    best_mult=mult,
                    best_lr=None if mult is None else mult * DEFAULT_LR[task][opt],
                    at_edge=self.at_edge(task, opt, s),
                )
                for label, m in (("own", mult), ("at_base_lr", base_mult)):
                    records = self.finals(task, opt, s, m) if m else []
                    ok = [r for r in records if not r["result"].get("diverged")]
                    stats = dict(n=len(ok), diverged=len(records) - len(ok), mult=m)
                    if ok:  # a seed that ended far above the others (stuck or blown up)
                        middle = statistics.median(r["result"]["valid"]["loss"] for r in ok)
                        stats["failed"] = sum(r["result"]["valid"]["loss"] > 2 * middle for r in ok)
                    for metric in ("loss", "acc"):
                        values = [
                            r["result"]["test"][metric] for r in ok if metric in r["result"]["test"]
                        ]
                        if not values:
                            continue
                        stats[f"test_{metric}"] = values
                        if s and base_final and len(values) == len(ok):
                            base_values = [
                                r["result"]["test"][metric]
                                for r in base_final
                                if not r["result"].get("diverged")
                            ]
                            diff, low, high = welch(base_values, values)
                            stats[f"diff_{metric}"] = [diff, low, high]
                    curve = mean_curve(records)
                    stats["curve"] = curve
                    stats["flat"] = flatness(curve)
                    if label == "own" and target is not None and curve:
                        stats["steps_to_target"] = steps_to(curve, target)
                    entry[label] = stats
                if ms and entry["own"].get("steps_to_target") is not None:
                    entry["seconds_to_target"] = entry["own"]["steps_to_target"] * ms[str(s)] / 1000
                row["variants"][str(s)] = entry
            if task in self.long_tasks and opt in self.long_optimizers:
                row["long"] = [self.long_summary(task, opt, f) for f in self.long_factors]
            if task in FLAT_SEARCH:
                row["flat_search"] = self.budget_summary(task)
            rows.append(row)
        return dict(rows=rows)


def _long_summary(plan: Plan, task: str, opt: str, factor: int) -> dict:
    out = {"factor": factor}
    base_values = None

    def finished(s: int, mult: float | None, factor: int) -> list[dict]:
        if mult is None:
            return []
        cfgs = [long_cfg(plan.cfg(task, opt, s, mult, seed), factor) for seed in plan.long_seeds]
        return [r for r in map(plan.store.get, cfgs) if r is not None]

    def test_losses(records: list[dict]) -> list[float]:
        return [r["result"]["test"]["loss"] for r in records if not r["result"].get("diverged")]

    for s in VARIANTS:
        mult = plan.best_mult(task, opt, s)
        records = finished(s, mult, factor)
        ok = [r for r in records if not r["result"].get("diverged")]
        values = test_losses(records)
        if s == 0:  # the base against itself at the length before (the regular run first)
            before = max([f for f in plan.long_factors if f < factor], default=1)
            earlier = test_losses(finished(s, mult, before))
            if values and earlier and len(earlier) == len(values):
                now, then = statistics.fmean(values), statistics.fmean(earlier)
                out["base_change"] = (now - then) / then
        curve = mean_curve(records)
        entry = dict(mult=mult, n=len(ok), diverged=len(records) - len(ok), test_loss=values,
                     curve=curve, flat=flatness(curve))  # fmt: skip
        if s == 0:
            base_values = values
        elif values and base_values:
            entry["diff_loss"] = list(welch(base_values, values))
        out[str(s)] = entry
    return out


Plan.long_summary = _long_summary


def flatness(curve: list[tuple[int, float]]) -> float | None:
    """Relative drop of the validation loss over the last quarter of the run (0.01 = 1 %)."""
    if len(curve) < 4:
        return None
    quarter = curve[-1 - len(curve) // 4][1]
    return (quarter - curve[-1][1]) / quarter if quarter else None


# --- report -------------------------------------------------------------------------------------


def fmt_diff(d: list[float] | None, digits: int = 3, scale: float = 1.0) -> str:
    if not d:
        return "n/a"
    diff, low, high = (x * scale for x in d)
    f = f"{{:+.{digits}f}}"
    ci = "" if math.isnan(low) else f" [{f.format(low)}, {f.format(high)}]"
    return (f.format(diff) + ci).replace("-", "−")


def judge(d: list[float] | None, lower_is_better: bool = True) -> str:
    if not d or math.isnan(d[1]):
        return "n/a"
    if d[1] <= 0 <= d[2]:
        return "no difference"
    better = d[2] < 0 if lower_is_better else d[1] > 0
    return "**XGrad better**" if better else "**XGrad worse**"


def mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def percent(x: float | None, signed: bool = False) -> str:
    """0.012 -> "1.2 %" ("+1.2 %" signed), with the minus sign the other columns use."""
    return "n/a" if x is None else f"{100 * x:{'+' if signed else ''}.1f} %".replace("-", "−")


def lr_text(mult: float | None, at_edge: bool = False) -> str:
    return "n/a" if mult is None else f"x{mult:g}" + ("†" if at_edge else "")


def report(ctx: dict, summary: dict) -> str:
    rows = summary["rows"]
    lines = [
        "# Evidence: is XGrad more than a learning-rate change?",
        "",
        f"- command: `{ctx['command']}`",
        f"- machine: {ctx['machine']}; torch {ctx['torch']}, Python {platform.python_version()}",
        f"- wall time: {ctx['wall']}",
        f"- date: {ctx['date']}; size `{ctx['size']}`, device `{ctx['device_name']}`",
        f"- protocol: learning rate = default x {{{', '.join(f'{m:g}' for m in ctx['mults'])}}} "
        f"for the base optimizer and XGrad-S1/S2; seeds {ctx['sweep_seeds']} per sweep point; "
        "each variant's best learning rate chosen by the mean final **validation** loss; the "
        f"winners rerun with seeds {ctx['seeds']}; reported on the **test** split (never used "
        "for a choice). Differences are XGrad minus base with a 95 % confidence interval "
        "(Welch's t over seeds); *no difference* when the interval contains 0."
        + (
            f" Seeds {ctx['band_seeds']} also ran at every sweep point, for the bands of the "
            "sensitivity plot only (after the choice)."
            if ctx.get("band_seeds")
            else ""
        ),
        "- results file: `evidence_runs.jsonl` (one line per run, keyed by its configuration; "
        "a rerun of the command reuses it and rebuilds this report)",
        "",
        "## Best against best (test loss; lower is better)",
        "",
        "| task | optimizer | base: best lr, test loss | XGrad-S1: best lr, test loss | "
        "S1 − base [95 % CI] | XGrad-S2: best lr, test loss | S2 − base [95 % CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        v = row["variants"]
        cells = [TITLES[row["task"]].split(" (")[0], NAMES[row["optimizer"]]]
        for s in ("0", "1", "2"):
            own = v[s]["own"]
            best = lr_text(v[s]["best_mult"], v[s].get("at_edge", False))
            bad = own.get("failed", 0) + own.get("diverged", 0)
            flag = f" ({bad} of {own['n'] + own['diverged']} seeds failed ‡)" if bad else ""
            cells.append(f"{best}: {mean_sd(own.get('test_loss', []))}{flag}")
            if s == "0":
                continue
            cells.append(f"{fmt_diff(own.get('diff_loss'))} {judge(own.get('diff_loss'))}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Best lr as a multiple of the default (listed under the sweep table); † = still at the "
        "edge of the (extended) grid, so that variant might do better further out. ‡ = seeds "
        "that diverged or ended at more than twice the median validation loss of the others "
        "(diverged seeds are left out of the mean; ended-high ones are kept in). Loss in "
        "nats (per example for digits, per character for the language models).",
    ]
    digits_rows = [r for r in rows if r["task"] == "digits"]
    if digits_rows:
        lines += [
            "",
            "Digits, test accuracy (%) of the same runs (higher is better):",
            "",
            "| optimizer | base | XGrad-S1 | S1 − base [95 % CI] | XGrad-S2 "
            "| S2 − base [95 % CI] |",
            "|---|---|---|---|---|---|",
        ]
        for row in digits_rows:
            v = row["variants"]
            cells = [NAMES[row["optimizer"]], mean_sd(v["0"]["own"].get("test_acc", []), 2)]
            for s in ("1", "2"):
                own = v[s]["own"]
                cells += [
                    mean_sd(own.get("test_acc", []), 2),
                    f"{fmt_diff(own.get('diff_acc'), 2)} {judge(own.get('diff_acc'), False)}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Time to target",
        "",
        "Target: the base's best validation loss (the minimum of its seed-mean validation curve, "
        "at its own best lr). *Steps*: the first step at which each variant's seed-mean "
        "validation curve reaches it (interpolated between evaluation points). *ms/step*: one "
        "whole training step of this model (forward, backward, clip, step), base and XGrad "
        "measured side by side in one process (interleaved blocks of steps, the fastest block; "
        "on the CPU the process's CPU time, one thread). *Time*: steps x ms/step; *speed-up*: "
        "the base's time over XGrad's.",
        "",
        "| task | optimizer | target | base: steps, time | XGrad-S1: steps, time (speed-up) "
        "| XGrad-S2: steps, time (speed-up) | ms/step base / S1 / S2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        v, ms = row["variants"], row["ms_per_step"]
        if row["target_valid_loss"] is None:
            continue
        cells = [
            TITLES[row["task"]].split(" (")[0],
            NAMES[row["optimizer"]],
            f"{row['target_valid_loss']:.3f}",
        ]
        base_t = v["0"].get("seconds_to_target")
        for s in ("0", "1", "2"):
            steps = v[s]["own"].get("steps_to_target")
            if steps is None:
                cells.append("not reached")
                continue
            t = v[s].get("seconds_to_target")
            text = f"{steps:.0f}, " + (f"{t:.1f} s" if t is not None else "n/a")
            if s != "0" and t and base_t:
                text += f" ({base_t / t:.2f}x)"
            cells.append(text)
        cells.append(" / ".join(f"{ms[s]:.1f}" for s in ("0", "1", "2")) if ms else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Early speed against final quality: seed-mean validation loss of the winners a third of "
        "the way into the run and at its end (lower is better).",
        "",
        "| task | optimizer | at 1/3: base / S1 / S2 | at the end: base / S1 / S2 |",
        "|---|---|---|---|",
    ]
    for row in rows:
        curves = [row["variants"][s]["own"].get("curve") or [] for s in ("0", "1", "2")]
        if not all(curves):
            continue
        third = min(
            range(len(curves[0])), key=lambda i: abs(3 * curves[0][i][0] - curves[0][-1][0])
        )
        early = " / ".join(f"{c[third][1]:.3f}" if len(c) > third else "n/a" for c in curves)
        final = " / ".join(f"{c[-1][1]:.3f}" for c in curves)
        lines.append(
            f"| {TITLES[row['task']].split(' (')[0]} | {NAMES[row['optimizer']]} "
            f"| step {curves[0][third][0]}: {early} | {final} |"
        )
    long_rows = [r for r in rows if r.get("long")]
    if long_rows:
        factors = [x["factor"] for x in long_rows[0]["long"]]
        times = " and ".join(f"{f}x" for f in factors)
        lines += [
            "",
            f"## Longer training: the winners, {times} the steps",
            "",
            f"Each variant at the lr it won in the sweep, trained {times} longer (the schedule "
            "stretched with it), to tell early speed from final quality: does a difference at "
            "the regular length survive more training, and has the base stopped improving? "
            "Test loss, mean ± sd over seeds; *base vs before*: the base's mean test loss "
            "against the same seeds at the length before (the regular run first); *flat*: drop "
            "of the validation loss over the last quarter.",
            "",
            "| task | optimizer | steps | base | XGrad-S1 | S1 − base [95 % CI] | XGrad-S2 "
            "| S2 − base [95 % CI] | base vs before | flat base / S1 / S2 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row, long in ((r, x) for r in long_rows for x in r["long"]):
            cells = [
                TITLES[row["task"]].split(" (")[0],
                NAMES[row["optimizer"]],
                str(row["steps"] * long["factor"]),
            ]
            for s in ("0", "1", "2"):
                e = long[s]
                cells.append(f"{lr_text(e['mult'])}: {mean_sd(e['test_loss'])} (n={e['n']})")
                if s != "0":
                    cells.append(f"{fmt_diff(e.get('diff_loss'))} {judge(e.get('diff_loss'))}")
            cells.append(percent(long.get("base_change"), signed=True))
            cells.append(" / ".join(percent(long[s]["flat"]) for s in ("0", "1", "2")))
            lines.append("| " + " | ".join(cells) + " |")
    suffix = ctx["suffix"]
    lines += [
        "",
        f"![learning-rate sensitivity](evidence{suffix}.png)",
        "",
        f"![validation curves of the winners](evidence_curves{suffix}.png)",
        "",
    ]
    lines += ["## Where the gain disappears", ""] + findings(rows)
    lines += [
        "",
        "## XGrad at the base's best learning rate",
        "",
        "The same comparison with XGrad forced to the base's best learning rate (the question "
        '"is it just a larger step?" asked the other way).',
        "",
        "| task | optimizer | base best lr | S1 − base [95 % CI] | S2 − base [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        v = row["variants"]
        cells = [
            TITLES[row["task"]].split(" (")[0],
            NAMES[row["optimizer"]],
            lr_text(v["0"]["best_mult"]),
        ]
        for s in ("1", "2"):
            d = v[s]["at_base_lr"].get("diff_loss")
            cells.append(f"{fmt_diff(d)} {judge(d)}")
        lines.append("| " + " | ".join(cells) + " |")
    union = sorted({float(m) for row in rows for m in row["sweep_valid_loss"]["0"]})
    lines += [
        "",
        "## Learning-rate sweep (final validation loss, mean of the sweep seeds)",
        "",
        "Bold: each variant's best. The grid is default x {"
        + ", ".join(f"{m:g}" for m in ctx["mults"])
        + "}, "
        + (
            f"extended by x2 beyond an end where a variant's best lay (up to {ctx['extend']} "
            "times each way; – = not needed there)."
            if ctx["extend"]
            else "not extended."
        ),
        "",
        "| task | optimizer | variant | " + " | ".join(f"x{m:g}" for m in union) + " |",
        "|---|---|---|" + "---|" * len(union),
    ]
    for row in rows:
        for s in ("0", "1", "2"):
            best = row["variants"][s]["best_mult"]
            cells = []
            for m in union:
                value = row["sweep_valid_loss"][s].get(str(m))
                if value is None:
                    cells.append("–")
                    continue
                text = f"{value:.3f}" if math.isfinite(value) else "diverged"
                cells.append(f"**{text}**" if m == best else text)
            lines.append(
                f"| {TITLES[row['task']].split(' (')[0]} | {NAMES[row['optimizer']]} "
                f"| {VARIANT_NAMES[int(s)]} | " + " | ".join(cells) + " |"
            )
    lines += [
        "",
        "Default learning rates (x1): "
        + "; ".join(
            f"{t}: " + ", ".join(f"{NAMES[o]} {DEFAULT_LR[t][o]:g}" for o in ctx["optimizers"])
            for t in ctx["tasks"]
        )
        + ".",
        "",
        "## Did training flatten?",
        "",
        "Relative drop of the seed-mean validation loss over the last quarter of each winner's "
        "run (below 1-2 % = flat; the cosine schedule ends every run at a low learning rate).",
        "",
        "| task | optimizer | base | XGrad-S1 | XGrad-S2 |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for s in ("0", "1", "2"):
            flat = row["variants"][s]["own"].get("flat")
            cells.append(percent(flat))
        lines.append(
            f"| {TITLES[row['task']].split(' (')[0]} | {NAMES[row['optimizer']]} | "
            + " | ".join(cells)
            + " |"
        )
    searched = {}  # one search per task, whichever optimizers it has
    for row in rows:
        if "flat_search" in row:
            searched.setdefault(row["task"], row)
    for row in searched.values():
        search = row["flat_search"]
        below = f"{100 * ctx['flat_threshold']:g} %"
        lines += [
            "",
            f"## Trained until flat: how many steps ({TITLES[row['task']].split(' (')[0]})",
            "",
            "The step count is searched before the sweep: the gpt task's steps x 1, 2, 4, ... "
            f"(up to x{ctx['flat_max_factor']}), the warmup and the cosine schedule stretched "
            f"with them, for the base {NAMES[FLAT_PILOT]} at the default lr, seed 0. The "
            f"first count past which more training buys less than {below} is chosen: its run's "
            f"validation loss falls less than {below} over its last quarter, or a run twice as "
            f"long ends less than {below} lower. Every run of this task then has that many steps.",
            "",
            "| steps | validation loss drop over the last quarter | final validation loss | |",
            "|---|---|---|---|",
        ]
        for pilot in search:
            flat = "diverged" if pilot["diverged"] else percent(pilot["flat"])
            valid = "n/a" if pilot["valid"] is None else f"{pilot['valid']:.3f}"
            mark = "**chosen**" if pilot["chosen"] else ""
            lines.append(f"| {pilot['steps']} | {flat} | {valid} | {mark} |")
    lines += ["", "## Sizes", ""]
    params = {row["task"]: row["params"] for row in rows}
    for task in ctx["tasks"]:
        p = params.get(task, SIZES[ctx["size"]][task])
        lines.append(f"- {TITLES[task]}: " + ", ".join(f"{k}={v}" for k, v in p.items()) + ".")
    lines += [
        "",
        "Models: digits, the CNN of `convergence_scripts/digits_cnn.py` (2 conv + 2 linear); "
        "LSTM, the char-LSTM of `convergence_scripts/char_lstm.py` (embedding, 1 LSTM layer, "
        "linear head); transformer, pre-LayerNorm decoder-only blocks (causal self-attention + "
        "4x GELU MLP), learned position embeddings. Schedules: cosine decay to 0 over the run "
        "(digits, LSTM); linear warmup then cosine decay to 10 % (transformer). Gradient "
        "clipping at norm 1 (LSTM, transformer). Weight decay: SGDM 5e-4 on digits, AdamW "
        f"{WEIGHT_DECAY['digits']:g} / {WEIGHT_DECAY['lstm']:g} / {WEIGHT_DECAY['gpt']:g} "
        "(transformer: matrices only). Data: digits 1078 train / 359 validation / 360 test "
        "(a fixed split); text, the char-LSTM's twelve stdlib modules, the first `train_chars` "
        "for training and two disjoint blocks of `eval_chars` at the end for validation and test.",
    ]
    if ctx.get("note"):
        lines += ["", f"Note: {ctx['note']}"]
    return "\n".join(lines).rstrip() + "\n"


def findings(rows: list[dict]) -> list[str]:
    """One line per (task, optimizer): XGrad's gain at the default lr, against a tuned base, and
    at the base's best lr. A gain at the default lr counts when the sweep's validation loss is
    lower by more than 0.5 %; it *survives tuning* when the best-against-best interval is below
    0."""
    out = []
    for row in rows:
        v, sweep = row["variants"], row["sweep_valid_loss"]
        parts, lost, kept = [], [], []
        for s in ("1", "2"):
            text = f"S{s}: "
            gain = None
            if "1.0" in sweep[s] and math.isfinite(sweep["0"]["1.0"] + sweep[s]["1.0"]):
                gain = (sweep[s]["1.0"] - sweep["0"]["1.0"]) / sweep["0"]["1.0"]
                text += f"{100 * gain:+.1f} % at the default lr (sweep, validation); ".replace(
                    "-", "−"
                )
            d, at_base = v[s]["own"].get("diff_loss"), v[s]["at_base_lr"].get("diff_loss")
            text += f"best against best (test) {fmt_diff(d)} → {judge(d).strip('*')}"
            if v[s]["best_mult"] != v["0"]["best_mult"]:
                text += f"; at the base's best lr {fmt_diff(at_base)} → {judge(at_base).strip('*')}"
            parts.append(text)
            better = judge(d) == "**XGrad better**"
            if gain is not None and gain < -0.005:
                (kept if better else lost).append(f"S{s}")
        tail = ""
        if lost:
            tail += (
                f" The default-lr gain of {', '.join(lost)} **disappears** once the base is tuned."
            )
        if kept:
            tail += f" The default-lr gain of {', '.join(kept)} **survives** tuning."
        out.append(
            f"- {TITLES[row['task']].split(' (')[0]}, {NAMES[row['optimizer']]} "
            f"(base best lr {lr_text(v['0']['best_mult'])}): " + "; ".join(parts) + "." + tail
        )
    return out


# --- plots --------------------------------------------------------------------------------------


def plots(plan: Plan, summary: dict, out: pathlib.Path, suffix: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {0: "black", 1: "tab:blue", 2: "tab:orange"}
    by_pair = {(r["task"], r["optimizer"]): r for r in summary["rows"]}
    tasks = [t for t in plan.tasks if any(task == t for task, _ in by_pair)]
    opts = plan.optimizers
    fig, axes = plt.subplots(
        len(tasks), len(opts), figsize=(3.6 * len(opts), 2.9 * len(tasks)), squeeze=False
    )
    for i, task in enumerate(tasks):
        for j, opt in enumerate(opts):
            ax = axes[i][j]
            if (task, opt) not in by_pair:  # gpt_flat: no SGDM
                ax.axis("off")
                continue
            finite, stars = [], []  # stars: the winners' mean + sd, always in view
            for s in VARIANTS:
                xs, mean, low, high = [], [], [], []
                for m in plan.grid(task, opt):
                    values = [
                        score(plan.store.get(plan.cfg(task, opt, s, m, seed)))
                        for seed in plan.sweep_seeds + plan.band_seeds
                    ]
                    values = [v for v in values if math.isfinite(v)]
                    if not values:
                        continue
                    xs.append(m * DEFAULT_LR[task][opt])
                    mean.append(statistics.fmean(values))
                    low.append(min(values))
                    high.append(max(values))
                finite += mean
                ax.plot(xs, mean, marker="o", ms=3, color=colors[s], label=VARIANT_NAMES[s])
                ax.fill_between(xs, low, high, color=colors[s], alpha=0.15)
                best = plan.best_mult(task, opt, s)
                if best is not None:
                    finals = [
                        r["result"]["valid"]["loss"]
                        for r in plan.finals(task, opt, s, best)
                        if not r["result"].get("diverged")
                    ]
                    if len(finals) > 1:
                        if statistics.fmean(finals) < 2 * statistics.median(finals):  # no ‡
                            stars.append(statistics.fmean(finals) + statistics.stdev(finals))
                        x = best * DEFAULT_LR[task][opt] * (1 + 0.06 * (s - 1))
                        ax.errorbar(
                            [x],
                            [statistics.fmean(finals)],
                            yerr=[statistics.stdev(finals)],
                            color=colors[s],
                            marker="*",
                            ms=9,
                            capsize=3,
                        )
            ax.set_xscale("log")
            ticks = [m * DEFAULT_LR[task][opt] for m in plan.grid(task, opt)]
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=7)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            if finite:
                low_y, high_y = min(finite), sorted(finite)[len(finite) // 2]
                high_y = max([high_y + 0.6 * (high_y - low_y)] + stars)
                ax.set_ylim(low_y - 0.05 * abs(low_y), high_y + 0.1 * (high_y - low_y) + 1e-3)
            ax.set_title(f"{task} / {NAMES[opt]}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0 or (task, opts[j - 1]) not in by_pair:
                ax.set_ylabel("final validation loss")
            if i == len(tasks) - 1:
                ax.set_xlabel("peak learning rate")
    axes[0][-1].legend(fontsize=7)
    chosen = ",".join(map(str, plan.sweep_seeds))
    fig.suptitle(
        "Learning-rate sensitivity: line = mean over seeds "
        f"{','.join(map(str, plan.sweep_seeds + plan.band_seeds))}, band = min-max (the lr is "
        f"chosen on the mean of seed{'s' * (len(plan.sweep_seeds) > 1)} {chosen});\n"
        "star = winner rerun, mean ± sd over its seeds",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / f"evidence{suffix}.png", dpi=85)
    plt.close(fig)

    fig, axes = plt.subplots(
        len(tasks), len(opts), figsize=(3.6 * len(opts), 2.9 * len(tasks)), squeeze=False
    )
    for i, task in enumerate(tasks):
        for j, opt in enumerate(opts):
            if (task, opt) not in by_pair:
                axes[i][j].axis("off")
                continue
            ax, row = axes[i][j], by_pair[task, opt]
            values = []
            for s in VARIANTS:
                curve = row["variants"][str(s)]["own"].get("curve") or []
                if curve:
                    ax.plot(
                        [c[0] for c in curve],
                        [c[1] for c in curve],
                        color=colors[s],
                        label=VARIANT_NAMES[s]
                        + " "
                        + lr_text(row["variants"][str(s)]["best_mult"]),
                    )
                    values += [c[1] for c in curve]
            if row["target_valid_loss"] is not None:
                ax.axhline(row["target_valid_loss"], color="grey", ls=":", lw=1)
            if values:
                low_y = min(values)
                ax.set_ylim(low_y - 0.03 * abs(low_y), sorted(values)[len(values) // 2] * 1.15)
            ax.set_title(f"{task} / {NAMES[opt]}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
            if j == 0 or (task, opts[j - 1]) not in by_pair:
                ax.set_ylabel("validation loss")
            if i == len(tasks) - 1:
                ax.set_xlabel("step")
    fig.suptitle(
        "Winners, seed-mean validation curves; dotted: the target (base's best)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(out / f"evidence_curves{suffix}.png", dpi=85)
    plt.close(fig)


# --- CLI ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--lr-mults", default=",".join(f"{m:g}" for m in LR_MULTS))
    parser.add_argument(
        "--extend",
        type=int,
        default=4,
        help="extend the lr grid by x2 up to this many times beyond an end where a best lies",
    )
    parser.add_argument(
        "--long-tasks",
        default="digits,lstm",
        help="tasks whose winners are also trained --long-factor times longer ('' for none)",
    )
    parser.add_argument(
        "--long-optimizers", default=",".join(OPTIMIZERS), help="optimizers of the longer runs"
    )
    parser.add_argument(
        "--long-factors", default="2,4", help="how many times longer the longer runs are"
    )
    parser.add_argument("--long-seeds", default="0,1,2", help="seeds of the longer runs")
    parser.add_argument(
        "--flat-max-factor",
        type=int,
        default=16,
        help="gpt_flat: double its steps up to this many times the gpt task's (a power of 2)",
    )
    parser.add_argument(
        "--flat-threshold",
        type=float,
        default=0.015,
        help="gpt_flat: flat = the validation loss fell less than this (relative) over the last "
        "quarter of the base's run",
    )
    parser.add_argument(
        "--band-seeds", default="", help="extra seeds at every sweep point, for the plot's bands"
    )
    parser.add_argument(
        "--sweep-seeds", default="0,1", help="seeds per sweep point (the lr: best mean over them)"
    )
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds of the winners' reruns")
    parser.add_argument(
        "-j", "--jobs", type=int, default=2, help="worker processes (0: run in this process)"
    )
    parser.add_argument("--cost-rounds", type=int, default=20)
    parser.add_argument("--cost-block", type=int, default=10)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny end-to-end smoke run: --size quick, AdamW only, 2 lrs, "
        "1 sweep seed, 2 final seeds, gpt_flat searched up to 4x (writes to --out, "
        "default a temp dir)",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=None,
        help="default benchmarks/results (--quick: $TMPDIR/xgrad-evidence-quick)",
    )
    parser.add_argument("--note", help="a sentence for the report")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.optimizers, args.lr_mults = "quick", "adamw", "0.5,2"
        args.sweep_seeds, args.seeds, args.cost_rounds, args.cost_block = "0", "0,1", 2, 2
        args.long_seeds, args.long_factors, args.band_seeds = "0,1", "2", ""
        args.long_tasks, args.long_optimizers, args.flat_max_factor = "gpt", "adamw", 4
        if args.out is None:
            import tempfile

            args.out = pathlib.Path(tempfile.gettempdir()) / "xgrad-evidence-quick"
    args.out = args.out or HERE / "results"
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    args.lr_mults = [float(m) for m in args.lr_mults.split(",")]
    args.sweep_seeds = [int(s) for s in args.sweep_seeds.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.long_tasks = [t for t in args.long_tasks.split(",") if t]
    args.long_optimizers = [o for o in args.long_optimizers.split(",") if o]
    args.long_seeds = [int(s) for s in args.long_seeds.split(",")]
    args.long_factors = [int(f) for f in args.long_factors.split(",") if f]
    args.band_seeds = [int(s) for s in args.band_seeds.split(",") if s]
    for name, given, known in (
        ("--tasks", args.tasks, TASKS),
        ("--optimizers", args.optimizers, OPTIMIZERS),
    ):
        if set(given) - set(known):
            parser.error(f"{name}: unknown {sorted(set(given) - set(known))}")
    if args.flat_max_factor < 1 or args.flat_max_factor & (args.flat_max_factor - 1):
        parser.error("--flat-max-factor: a power of 2 (1, 2, 4, ...)")
    return args


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({cpu_model()})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.size == "small" and args.device == "cpu" else f"_{args.size}_{args.device}"
    store = Store(args.out / f"evidence_runs{suffix}.jsonl")
    plan = Plan(args, store)
    started = time.perf_counter()
    begun = datetime.datetime.now(datetime.timezone.utc)
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    pool = InlinePool() if args.jobs == 0 else ProcessPoolExecutor(args.jobs, mp_context=context)
    before, finished = len(store.runs), False
    signal.signal(signal.SIGTERM, _terminate)  # a `kill` still records the session below
    cost_pool = InlinePool() if args.jobs == 0 else ProcessPoolExecutor(1, mp_context=context)
    try:
        with cost_pool:  # one process: no second run beside it on a 2-core machine
            run_all(plan.costs(), store, cost_pool, "per-step cost")
        with pool:
            for task in args.tasks:  # task by task: a cut-short run leaves whole tasks done
                while run_all(plan.budget(task), store, pool, f"{task}: steps until flat"):
                    pass
                while run_all(plan.sweep([task]), store, pool, f"{task}: lr sweep"):
                    pass  # again while the grid grows (a best at its edge)
                run_all(plan.winners([task]), store, pool, f"{task}: winners x seeds")
            for task in args.tasks:  # then the longer runs, last: they answer a second question
                for factor in plan.long_factors:
                    run_all(plan.long([task], factor), store, pool, f"{task}: winners, {factor}x")
            for task in args.tasks:  # last: only the plot's seed bands need them
                run_all(plan.bands([task]), store, pool, f"{task}: seed bands")
        finished = True
    finally:
        new = len(store.runs) - before
        wall = time.perf_counter() - started
        if new:
            session = dict(kind="session", start=begun.isoformat(timespec="seconds"), wall_s=wall,
                           new_runs=new, jobs=args.jobs, argv=sys.argv[1:])  # fmt: skip
            store.add(session if finished else dict(session, interrupted=True))
    summary = plan.summary()
    total = sum(s["wall_s"] for s in store.sessions)
    compute = sum(r["result"]["wall_s"] for r in store.runs.values())
    cut = sum(bool(x.get("interrupted")) for x in store.sessions)
    wall_text = (
        f"{total / 60:.1f} min in {len(store.sessions)} invocation(s) that trained"
        + (f" ({cut} interrupted, then resumed)" if cut else "")
        + f" ({sum(x['new_runs'] for x in store.sessions)} runs, {args.jobs} worker processes, "
        f"1 torch thread each); compute in the runs {compute / 60:.1f} core-minutes"
    )
    words = argv if argv is not None else sys.argv[1:]
    ctx = dict(
        command=shlex.join(["python", "benchmarks/evidence.py", *words]),
        machine=f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        torch=importlib.metadata.version("torch"),
        date=begun.strftime("%Y-%m-%d %H:%M UTC"),
        wall=wall_text,
        size=args.size,
        device=args.device,
        device_name=device_name(args.device),
        mults=args.lr_mults,
        extend=args.extend,
        sweep_seeds=",".join(map(str, args.sweep_seeds)),
        band_seeds=",".join(map(str, args.band_seeds)),
        seeds=",".join(map(str, args.seeds)),
        tasks=args.tasks,
        optimizers=args.optimizers,
        note=args.note,
        suffix=suffix,
        flat_threshold=args.flat_threshold,
        flat_max_factor=args.flat_max_factor,
    )
    plots(plan, summary, args.out, suffix)
    (args.out / f"evidence{suffix}.md").write_text(report(ctx, summary), "utf-8")
    (args.out / f"evidence{suffix}.json").write_text(
        json.dumps(dict(context=ctx, sizes=SIZES[args.size], **summary), indent=1) + "\n", "utf-8"
    )
    print(f"wrote {args.out / f'evidence{suffix}.md'} ({new} new runs, {wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
