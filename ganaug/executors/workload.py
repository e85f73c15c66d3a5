"""What a cell has to do (its loop's steps, the data's sizes), and a cell's seconds as an estimate gives them."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from ..progress import fmt_seconds

# Per-class image counts of the registered sources (all partitions), for a guess before the split exists.
SOURCE_SIZES = {"digits": (10, 180), "mnist-5k": (10, 500), "mnist": (10, 7000), "fashion-mnist": (10, 7000),
                "cifar10": (10, 6000), "cifar100": (100, 600)}
GRAY = {"digits", "mnist-5k", "mnist", "fashion-mnist"}


@dataclass
class Guess:
    """A cell's seconds and where they came from: records, benchmark, guess, this run, done (what it took), or unknown."""

    seconds: Optional[float]
    source: str

    def text(self) -> str:
        if self.source == "done":
            return f"took {fmt_seconds(self.seconds)}" if self.seconds is not None else "done"
        if self.seconds is None:
            return "no estimate"
        return f"~{fmt_seconds(self.seconds)} ({self.source})"


@dataclass
class Sizes:
    shape: Tuple[int, int, int]
    classes: int
    n_train: int
    n_val: int
    n_test: int
    exact: bool  # from the split's manifest; else guessed from the config and the source


def data_sizes(sub: Any) -> Sizes:
    """The split's sizes from its manifest, or, before the split exists, a guess from the config and the source."""
    from ..memory import shape_and_classes
    from ..stages.layout import paths

    info = shape_and_classes(paths(sub))
    if info is not None:
        (c, h, w), k, n_train, m = info
        counts = m.get("counts", {})
        return Sizes((int(c), int(h), int(w)), int(k), int(n_train), int(sum(counts.get("val", {}).values())),
                     int(sum(counts.get("test", {}).values())), True)
    from ..data import DATASETS

    d, s = sub.data, sub.split
    meta = DATASETS.meta(d.source) if d.source in DATASETS.names() else {}
    side = d.resolution or meta.get("resolution") or 32
    channels = d.channels or (1 if d.source in GRAY else 3)
    classes, per_class = SOURCE_SIZES.get(d.source, (0, 0))
    if not classes and d.root and Path(d.root).is_dir():  # a folder of class folders
        folders = [f for f in os.scandir(d.root) if f.is_dir() and not f.name.startswith(".")]
        classes = len(folders) if not d.label_regex else 10
        files = sum(sum(1 for x in os.scandir(f.path) if x.is_file()) for f in folders)
        per_class = files // max(classes, 1)
    classes, per_class = classes or 10, per_class or 500
    if s.n_per_class or s.first_per_class:
        n = s.n_per_class or s.first_per_class
    elif s.fraction:
        n = int(s.fraction * max(0, per_class - s.val_per_class))
    else:
        n = 100
    n = min(n, max(1, per_class - s.val_per_class))
    test = s.test_per_class or max(1, per_class - n - s.val_per_class)
    return Sizes((channels, side, side), classes, n * classes, s.val_per_class * classes, test * classes, False)


def planned_steps(cell: Any, sizes: Optional[Sizes]) -> Optional[float]:
    """The length of a cell's loop in the unit its bar counts (optimizer steps; kimg for the official StyleGAN2)."""
    sub = cell.sub
    if sub is None:
        return None
    if cell.kind == "train-clf":
        return float(sub.classifier.steps)
    if cell.kind == "features":
        return float(sub.evaluate.domain.steps)
    if cell.kind == "train-gan":
        g = sub.gen(cell.spec.get("generator"))
        if getattr(g, "impl", None) == "official":
            return float(g.kimg) if g.kimg else None
        if sizes is None:
            return None
        # As the loops count: epochs of ceil(n / batch) steps, or ceil(kimg * 1000 / batch); per class, each class's.
        batch = getattr(g, "batch_size", None) or 32
        pairs = sizes.classes if getattr(g, "per_class", False) else 1
        n = sizes.n_train / pairs
        per_pair = math.ceil(g.kimg * 1000 / batch) if g.kimg else g.epochs * max(1, math.ceil(n / batch))
        return float(pairs * per_pair)
    return None
