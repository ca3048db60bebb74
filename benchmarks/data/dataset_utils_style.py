"""Dataset helpers of an image-classification project (no training step): the second input of
``benchmarks/cli_latency.py``.

Most files a pre-commit hook sees in a training repository look like this one: data indexing,
splits, augmentation parameters, metrics bookkeeping. The codemod must pass over them
quickly; nothing here is a training loop.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sample:
    """One labelled image on disk."""

    path: Path
    label: int
    group: str = ""

    @property
    def key(self) -> str:
        return hashlib.sha1(str(self.path).encode()).hexdigest()[:12]


@dataclass
class Split:
    """Indices of the samples in each part of a split."""

    train: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)
    test: list[int] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def check_disjoint(self) -> None:
        seen: set[int] = set()
        for name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            overlap = seen.intersection(part)
            if overlap:
                raise ValueError(f"{name} shares {len(overlap)} samples with another part")
            seen.update(part)


class ClassIndex:
    """Class names to integer labels, stable across runs (sorted names)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        self.to_label = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.to_label

    def label(self, name: str) -> int:
        try:
            return self.to_label[name]
        except KeyError:
            known = ", ".join(self.names[:5])
            raise KeyError(f"unknown class {name!r}; known: {known}...") from None

    def name(self, label: int) -> str:
        return self.names[label]

    def to_json(self) -> str:
        return json.dumps({"classes": self.names}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClassIndex:
        return cls(json.loads(text)["classes"])


def scan_folder(root: str | os.PathLike[str]) -> tuple[list[Sample], ClassIndex]:
    """ImageFolder layout: ``root/<class>/<image>``; sorted so the order never depends on the
    file system."""
    root = Path(root)
    classes = ClassIndex(p.name for p in root.iterdir() if p.is_dir())
    samples = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, classes.label(class_dir.name)))
    log.info("found %d images in %d classes under %s", len(samples), len(classes), root)
    return samples, classes


def read_index(path: str | os.PathLike[str], root: str | os.PathLike[str] = ".") -> list[Sample]:
    """A CSV index with ``path,label[,group]`` rows (header optional)."""
    root = Path(root)
    samples = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            if row[0] == "path":
                continue
            group = row[2] if len(row) > 2 else ""
            samples.append(Sample(root / row[0], int(row[1]), group))
    return samples


def write_index(samples: Sequence[Sample], path: str | os.PathLike[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "group"])
        for sample in samples:
            writer.writerow([str(sample.path), sample.label, sample.group])


def split_by_group(
    samples: Sequence[Sample], fractions: tuple[float, float, float], seed: int = 0
) -> Split:
    """Random split in which all samples of one group (patient, video, site) land in one part,
    so nothing leaks between train and test."""
    if not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[sample.group or sample.key].append(i)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    total = len(samples)
    split = Split()
    parts = (split.train, split.val, split.test)
    bounds = (fractions[0] * total, (fractions[0] + fractions[1]) * total)
    count = 0
    for name in names:
        members = groups[name]
        part = parts[0] if count < bounds[0] else parts[1] if count < bounds[1] else parts[2]
        part.extend(members)
        count += len(members)
    for part in parts:
        part.sort()
    split.check_disjoint()
    return split


def stratified_split(samples: Sequence[Sample], val_fraction: float, seed: int = 0) -> Split:
    """Per class, the same fraction goes to validation (small classes keep at least one)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_label[sample.label].append(i)
    rng = random.Random(seed)
    split = Split()
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        split.val.extend(members[:n_val])
        split.train.extend(members[n_val:])
    split.train.sort()
    split.val.sort()
    return split


def class_weights(samples: Sequence[Sample], n_classes: int, power: float = 0.5) -> list[float]:
    """Inverse-frequency weights (``power`` 0.5: inverse square root), normalised to mean 1."""
    counts = Counter(sample.label for sample in samples)
    raw = [1.0 / max(counts.get(c, 0), 1) ** power for c in range(n_classes)]
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]


def balanced_order(samples: Sequence[Sample], seed: int = 0) -> Iterator[int]:
    """Indices cycling through the classes in turn (each class shuffled), for a sampler that
    shows rare classes as often as common ones."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        by_label[sample.label].append(i)
    rng = random.Random(seed)
    queues = []
    for label in sorted(by_label):
        members = list(by_label[label])
        rng.shuffle(members)
        queues.append(members)
    position = [0] * len(queues)
    for _ in range(len(samples)):
        for q, members in enumerate(queues):
            yield members[position[q] % len(members)]
            position[q] += 1


@dataclass(frozen=True)
class CropParams:
    """A random-resized-crop box, drawn once per sample and recorded for reproducibility."""

    top: int
    left: int
    height: int
    width: int
    flip: bool

    def as_tuple(self) -> tuple[int, int, int, int, bool]:
        return (self.top, self.left, self.height, self.width, self.flip)


def draw_crop(
    height: int,
    width: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> CropParams:
    """Inception-style crop: area in ``scale``, aspect ratio log-uniform in ``ratio``; falls
    back to the central crop when ten tries miss."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return CropParams(top, left, h, w, rng.random() < 0.5)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return CropParams((height - h) // 2, (width - w) // 2, h, w, False)


def normalise(pixel: Sequence[float]) -> tuple[float, ...]:
    """One RGB pixel in [0, 1] to the ImageNet-normalised values."""
    return tuple((p - m) / s for p, m, s in zip(pixel, MEAN, STD, strict=True))


class RunningConfusion:
    """A confusion matrix filled batch by batch; accuracy and per-class recall at the end."""

    def __init__(self, n_classes: int) -> None:
        self.n = n_classes
        self.table = [[0] * n_classes for _ in range(n_classes)]

    def add(self, targets: Iterable[int], predictions: Iterable[int]) -> None:
        for t, p in zip(targets, predictions, strict=True):
            self.table[t][p] += 1

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.table)

    def accuracy(self) -> float:
        correct = sum(self.table[i][i] for i in range(self.n))
        return correct / self.total if self.total else 0.0

    def recall(self) -> list[float]:
        out = []
        for i, row in enumerate(self.table):
            n = sum(row)
            out.append(row[i] / n if n else float("nan"))
        return out

    def balanced_accuracy(self) -> float:
        values = [r for r in self.recall() if not math.isnan(r)]
        return sum(values) / len(values) if values else 0.0

    def report(self, classes: ClassIndex) -> str:
        lines = [f"accuracy {self.accuracy():.4f}, balanced {self.balanced_accuracy():.4f}"]
        for label, value in enumerate(self.recall()):
            lines.append(f"  {classes.name(label):<24} recall {value:.3f}")
        return "\n".join(lines)


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in chunks (images can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_duplicates(samples: Sequence[Sample]) -> dict[str, list[Path]]:
    """Identical image files (by content), which would leak across a split."""
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for sample in samples:
        by_digest[file_digest(sample.path)].append(sample.path)
    return {d: paths for d, paths in by_digest.items() if len(paths) > 1}


def summary(samples: Sequence[Sample], classes: ClassIndex) -> dict[str, object]:
    counts = Counter(sample.label for sample in samples)
    return {
        "images": len(samples),
        "classes": len(classes),
        "smallest": min(counts.values(), default=0),
        "largest": max(counts.values(), default=0),
        "groups": len({sample.group for sample in samples if sample.group}),
    }
