"""Small character-level LSTM language model on the Python standard library's own source.

The text is on every machine with Python (``sysconfig.get_paths()['stdlib']``); a fixed file list
and a fixed split make it the same data for every seed and optimizer. A plain training script:
``benchmarks/convergence.py`` patches a copy with ``xgrad-rewrite`` and runs it with ``XGRAD_S``.
Each epoch prints one ``RESULT {json}`` line (seed, epoch, train loss, validation perplexity,
epoch time).

    python benchmarks/convergence_scripts/char_lstm.py --optimizer adam --epochs 1 --seeds 0
"""

import argparse
import json
import math
import pathlib
import sysconfig
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from xgrad_rewrite.optim import AdaBelief, AdaM3

LEARNING_RATES = {"sgdm": 1.0, "adam": 1e-2, "adamw": 1e-2, "adabelief": 1e-2, "adam3": 1e-2}
# Stable, plain-Python modules present in every CPython 3.10+ install.
SOURCES = [
    "argparse.py", "textwrap.py", "shlex.py", "fractions.py", "dataclasses.py", "heapq.py",
    "bisect.py", "string.py", "calendar.py", "difflib.py", "csv.py", "fnmatch.py",
]  # fmt: skip
VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127))  # everything else maps to index 0


def load_text(train_chars, valid_chars):
    """The concatenated sources as indices: the first ``train_chars`` train, the next validate."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    text = "".join((stdlib / name).read_text(encoding="utf-8") for name in SOURCES)
    if len(text) < train_chars + valid_chars:
        raise SystemExit(f"only {len(text)} characters of text, need {train_chars + valid_chars}")
    lookup = {c: i for i, c in enumerate(VOCAB)}
    data = torch.tensor([lookup.get(c, 0) for c in text], dtype=torch.long)
    return data[:train_chars], data[train_chars : train_chars + valid_chars]


class CharLSTM(nn.Module):
    def __init__(self, vocab, embed=32, hidden=128):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def batches(data, seq_len, batch_size, generator):
    """Random windows of ``seq_len + 1`` characters, one pass worth of them per epoch."""
    starts = torch.randperm(len(data) - seq_len - 1, generator=generator)
    starts = starts[: len(data) // seq_len]
    for i in range(0, len(starts) - batch_size + 1, batch_size):
        rows = torch.stack([data[s : s + seq_len + 1] for s in starts[i : i + batch_size]])
        yield rows[:, :-1], rows[:, 1:]


def build_optimizer(name, model, lr):
    if name == "sgdm":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    if name == "adabelief":
        return AdaBelief(model.parameters(), lr=lr)
    return AdaM3(model.parameters(), lr=lr)


def train(model, data, optimizer, args, generator):
    model.train()
    total, count = 0.0, 0
    for inputs, targets in batches(data, args.seq_len, args.batch_size, generator):
        optimizer.zero_grad()
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        total += loss.item()
        count += 1
    return total / count


def evaluate(model, data, seq_len):
    """Perplexity over consecutive, non-overlapping windows of the validation text."""
    model.eval()
    usable = (len(data) - 1) // seq_len * seq_len
    inputs = data[:usable].view(-1, seq_len)
    targets = data[1 : usable + 1].view(-1, seq_len)
    with torch.no_grad():
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    return math.exp(loss.item())


def run(args, seed, train_data, valid_data):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = CharLSTM(len(VOCAB), hidden=args.hidden)
    lr = args.lr or LEARNING_RATES[args.optimizer]
    optimizer = build_optimizer(args.optimizer, model, lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_loss = train(model, train_data, optimizer, args, generator)
        epoch_s = time.perf_counter() - start
        perplexity = evaluate(model, valid_data, args.seq_len)
        scheduler.step()
        record = dict(seed=seed, epoch=epoch, train_loss=train_loss, valid_ppl=perplexity)
        print("RESULT", json.dumps(dict(record, epoch_s=epoch_s)), flush=True)
    print(f"seed {seed}: final validation perplexity {perplexity:.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(LEARNING_RATES), default="adam")
    parser.add_argument("--lr", type=float, default=None, help="default depends on --optimizer")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--train-chars", type=int, default=120_000)
    parser.add_argument("--valid-chars", type=int, default=20_000)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; one run per seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_data, valid_data = load_text(args.train_chars, args.valid_chars)
    for seed in [int(s) for s in args.seeds.split(",")]:
        run(args, seed, train_data, valid_data)


if __name__ == "__main__":
    main()
