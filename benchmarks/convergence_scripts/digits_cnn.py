"""Small CNN on scikit-learn's bundled 8x8 digits: a plain training script, not patched by hand.

``benchmarks/convergence.py`` patches a copy with ``xgrad-rewrite`` and runs it with ``XGRAD_S``.
Each epoch prints one ``RESULT {json}`` line (seed, epoch, train loss, test accuracy, epoch time).

    python benchmarks/convergence_scripts/digits_cnn.py --optimizer adam --epochs 2 --seeds 0
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from xgrad_rewrite.optim import AdaBelief, AdaM3

LEARNING_RATES = {"sgdm": 0.05, "adam": 1e-3, "adamw": 1e-3, "adabelief": 1e-3, "adam3": 1e-3}


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
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def load_data(batch_size):
    """A fixed 80/20 split (same for every seed and optimizer); only the batch order varies."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    split = int(0.8 * len(labels))
    train_idx, test_idx = order[:split], order[split:]
    train_set = TensorDataset(images[train_idx], labels[train_idx])
    test_set = TensorDataset(images[test_idx], labels[test_idx])
    return DataLoader(train_set, batch_size=batch_size, shuffle=True), DataLoader(test_set, 512)


def build_optimizer(name, model, lr):
    if name == "sgdm":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    if name == "adabelief":
        return AdaBelief(model.parameters(), lr=lr)
    return AdaM3(model.parameters(), lr=lr)


def train(model, loader, optimizer):
    model.train()
    total, count = 0.0, 0
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        count += len(target)
    return total / count


def test(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            correct += (model(data).argmax(dim=1) == target).sum().item()
    return 100.0 * correct / len(loader.dataset)


def run(args, seed):
    torch.manual_seed(seed)
    train_loader, test_loader = load_data(args.batch_size)
    model = Net()
    lr = args.lr or LEARNING_RATES[args.optimizer]
    optimizer = build_optimizer(args.optimizer, model, lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_loss = train(model, train_loader, optimizer)
        epoch_s = time.perf_counter() - start
        accuracy = test(model, test_loader)
        scheduler.step()
        record = dict(seed=seed, epoch=epoch, train_loss=train_loss, test_acc=accuracy)
        print("RESULT", json.dumps(dict(record, epoch_s=epoch_s)), flush=True)
    print(f"seed {seed}: final test accuracy {accuracy:.2f}%", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(LEARNING_RATES), default="sgdm")
    parser.add_argument("--lr", type=float, default=None, help="default depends on --optimizer")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; one run per seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for seed in [int(s) for s in args.seeds.split(",")]:
        run(args, seed)


if __name__ == "__main__":
    main()
