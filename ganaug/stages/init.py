"""`ganaug init FOLDER`: read a folder of class subfolders and write a commented config that runs as it is.

The folder is read as the `imagefolder` source reads it (the same class folders, the same extensions), but only
the image headers: classes, counts, sizes, modes and unreadable files, in seconds for thousands of photos. From
them the config is sized:

- resolution: the images' median short side, brought down to 32 on a CPU (64 with a GPU) so the generator trains in
  minutes; smaller images keep their own side;
- channels: 1 when every image is grayscale (16-bit ones too, rescaled by their type's range), else 3;
- the split, from the smallest class: 15% real validation, at least 25% held out for the test, the rest (at most
  1,000) for training; every class gets the same training count, the test takes everything left over;
- the bundled default's six arms, and 5 seeds (the default has 4: a folder of one's own is noisier than MNIST),
  so the first run compares and tests;
- the generator: the conditional DCGAN with ADA on a CPU, StyleGAN2 with ADA on a GPU (at 32 px and up).

The config is checked by the same loader `run` uses before it is written, and written atomically.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import ConfigError, DataError

VAL_SHARE, TEST_SHARE = 0.15, 0.25  # of the smallest class
MAX_TRAIN = 1000  # per class: beyond this a dataset is not small, and the generator's epochs grow with it
MIN_TRAIN = 2  # per class, so the split has a training image of every class left after validation and test


@dataclass
class FolderSurvey:
    """What `init` learned from a folder's image headers."""

    root: Path
    classes: List[str]
    counts: Dict[str, int]  # readable images per class
    unreadable: List[str] = field(default_factory=list)  # paths relative to root
    modes: Counter = field(default_factory=Counter)
    short_sides: List[int] = field(default_factory=list)

    @property
    def smallest(self) -> str:
        return min(self.classes, key=lambda c: (self.counts[c], c))

    @property
    def gray(self) -> bool:
        from ..data.decode import GRAY_MODES

        return bool(self.modes) and set(self.modes) <= GRAY_MODES

    @property
    def high_depth(self) -> int:
        from ..data.decode import HIGH_DEPTH_MODES

        return sum(n for m, n in self.modes.items() if m in HIGH_DEPTH_MODES)


def survey(root: Path) -> FolderSurvey:
    """Classes, readable counts, modes and sizes of a folder of class subfolders (headers only)."""
    from ..data.decode import header
    from ..data.folder import _labels_from_folders

    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ganaug init: folder '{root}' does not exist; give a folder of class subfolders "
                        f"({root}/<class>/<image>.jpg)")
    classes, files, _ = _labels_from_folders(root)
    out = FolderSurvey(root=root, classes=classes, counts={c: 0 for c in classes})
    for rel, label in files:
        h = header(str(root / rel))
        if "mode" not in h:
            out.unreadable.append(rel)
            continue
        out.counts[classes[label]] += 1
        out.modes[h["mode"]] += 1
        out.short_sides.append(min(h["size"]))
    empty = [c for c in classes if out.counts[c] == 0]
    if empty:
        raise DataError(f"ganaug init: class folder '{root / empty[0]}' has no readable image "
                        f"({sum(1 for u in out.unreadable if u.startswith(empty[0] + '/'))} unreadable); "
                        "add images or remove the folder")
    return out


@dataclass
class Plan:
    resolution: int
    channels: int
    n_per_class: int
    val_per_class: int
    test_min: int
    generator: str
    kimg: int
    gpu: bool


def size_split(smallest: int, name: str) -> tuple[int, int, int]:
    """(n_per_class, val_per_class, the fewest test images a class keeps) for a smallest class of `smallest`."""
    val = max(1, round(VAL_SHARE * smallest))
    test = max(2, math.ceil(TEST_SHARE * smallest))
    n = min(MAX_TRAIN, smallest - val - test)
    if n < MIN_TRAIN:
        need = MIN_TRAIN + 1 + 2
        raise DataError(f"ganaug init: class '{name}' has {smallest} readable image(s); a split needs at least {need} per "
                        "class (training, validation and test images); add images or remove the class folder")
    return n, val, test


def choose(s: FolderSurvey, gpu: bool) -> Plan:
    side = int(statistics.median(s.short_sides))
    cap = 64 if gpu else 32
    resolution = cap if side >= cap else max(8, side - side % 2)
    n, val, test = size_split(s.counts[s.smallest], s.smallest)
    generator = "stylegan2" if gpu and resolution >= 32 else "cgan"
    # Thousands of real images shown to the generator: the default's 200 kimg at 1,000 training images, fewer on a
    # CPU for larger colour images so a first run takes minutes, not hours.
    kimg = 1000 if generator == "stylegan2" else (200 if resolution <= 28 and s.gray else 100)
    return Plan(resolution=resolution, channels=1 if s.gray else 3, n_per_class=n, val_per_class=val, test_min=test,
                generator=generator, kimg=kimg, gpu=gpu)


def _slug(name: str) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-.")
    return slug or "my-data"


def render(s: FolderSurvey, p: Plan, name: str) -> str:
    """The config's text: every choice commented with the figure it came from."""
    counts = ", ".join(f"{c} {s.counts[c]}" for c in s.classes[:8]) + (" ..." if len(s.classes) > 8 else "")
    side = int(statistics.median(s.short_sides))
    lines = [
        f"# Written by `ganaug init {s.root}`: {len(s.classes)} classes, {sum(s.counts.values())} readable images "
        f"({counts}).",
        "# Run it with `ganaug run -c THIS_FILE` (add --dry-run to see the plan and its time first), then",
        "# `ganaug report -c THIS_FILE` for the HTML report. Every key: docs/reference/config.md, or `ganaug schema`.",
        f"name: {name}",
        f"out_dir: runs/{name}",
        "device: auto  # cuda > mps > cpu",
        "data:",
        "  source: imagefolder",
        f"  root: {str(s.root.resolve())!r}",
        f"  resolution: {p.resolution}  # the images' median short side is {side} px"
        + (f"; {p.resolution} keeps a {'GPU' if p.gpu else 'CPU'} run short (raise it for detail)"
           if p.resolution < side else ""),
        f"  channels: {p.channels}  # " + ("every image is grayscale" if p.channels == 1 else "colour"),
    ]
    if s.high_depth:
        lines.append(f"  intensity: dtype  # {s.high_depth} high-bit-depth image(s): rescaled by their type's range "
                     "(minmax or percentile for images that use a small part of it)")
    if s.unreadable:
        shown = ", ".join(s.unreadable[:3]) + (" ..." if len(s.unreadable) > 3 else "")
        lines.append(f"  bad_images: skip  # {len(s.unreadable)} unreadable file(s) left out: {shown}")
    smallest = s.smallest
    lines += [
        f"split:  # sized to the smallest class, '{smallest}' ({s.counts[smallest]} images): "
        f"{p.n_per_class} train + {p.val_per_class} validation + at least {p.test_min} test",
        f"  n_per_class: {p.n_per_class}  # real training images per class (the same for every class)",
        f"  val_per_class: {p.val_per_class}  # real images for model selection; fakes never go here",
        "  seed: 0  # the test set is every image left over, never seen in training or selection",
    ]
    if p.generator == "stylegan2":
        lines += [
            "gan:  # StyleGAN2 with ADA: the field's choice for a few hundred to a few thousand images on a GPU",
            "  name: stylegan2",
            f"  kimg: {p.kimg}  # thousands of real images shown; the budget check says if it was too short",
            "  augment: ada",
        ]
    else:
        lines += [
            "gan:  # a conditional DCGAN with ADA: trains in minutes on a CPU (with a GPU, `ganaug init` picks StyleGAN2)",
            "  name: cgan",
            f"  kimg: {p.kimg}  # thousands of real images shown; the budget check says if it was too short",
            "  batch_size: 64",
            "  augment: ada  # adaptive discriminator augmentation: the standard guard against a small set's overfitting",
            f"  ada_kimg: {p.kimg}  # p can go from 0 to 1 within this run (StyleGAN2-ADA's 500 suits runs of thousands of kimg)",
        ]
    lines += [
        "  # mirror: true  # x-flip real images, only if your classes survive a left-right flip",
        "sample: {n_per_class: 1000}  # fakes per class",
        "classifier: {name: small-cnn, steps: 600, batch_size: 64, lr: 0.001, width: 16}",
        "arms:  # what the table compares with `real` (only real training images)",
        "  - {name: real, data: real}",
        "  - {name: synthetic, data: synthetic}  # fakes only: how good are they on their own?",
        "  - {name: mixed-0.8, data: mixed, mix: {p_real: 0.8}}  # each sample real with probability 0.8, else a fake",
        "  - {name: real+1000, data: mixed, mix: {add: 1000}}  # every real image plus 1000 fakes per class",
        "  - {name: real-aug, data: real, augment: classic}  # classic augmentation: the bar fakes must clear",
        "  - {name: mixed-0.8-aug, data: mixed, mix: {p_real: 0.8}, augment: classic}",
        "seeds: [0, 1, 2, 3, 4]  # 5 replicates: spread, paired tests and verdicts",
        "executor: {name: local}  # cells in parallel processes on this machine",
        "",
    ]
    return "\n".join(lines)


def run_init(folder: Path, output: Optional[Path], force: bool = False, gpu: Optional[bool] = None) -> tuple[Path, str]:
    """Survey `folder`, write the config to `output` (default ./<folder name>.yaml); returns (path, summary)."""
    from ..config import load_config
    from ..utils import atomic_write_text

    s = survey(folder)
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    name = _slug(Path(folder).expanduser().resolve().name)
    out = Path(output) if output is not None else Path(f"{name}.yaml")
    if out.exists() and not force:
        raise ConfigError(f"ganaug init: '{out}' exists; give another --output, or --force to replace it")
    p = choose(s, gpu)
    text = render(s, p, name)
    # Checked by the loader `run` uses, before anything is written.
    tmp = out.with_name(f".{out.name}.init-check.yaml")
    try:
        atomic_write_text(tmp, text)
        load_config(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(out, text)
    smallest = s.smallest
    largest = max(s.classes, key=lambda c: s.counts[c])
    sizes = (f"every class {s.counts[smallest]}" if s.counts[smallest] == s.counts[largest] else
             f"smallest class '{smallest}' ({s.counts[smallest]}), largest '{largest}' ({s.counts[largest]})")
    summary = [f"{s.root}: {len(s.classes)} classes, {sum(s.counts.values())} readable images; {sizes}"]
    if s.unreadable:
        summary.append(f"{len(s.unreadable)} unreadable file(s) will be skipped (data.bad_images: skip), e.g. "
                       f"{s.unreadable[0]}")
    summary.append(f"split per class: {p.n_per_class} train, {p.val_per_class} validation, the rest (at least "
                   f"{p.test_min}) test; {p.resolution} px, {p.channels} channel(s); generator {p.generator}; "
                   "6 arms x 5 seeds")
    summary.append(f"wrote {out}; next: ganaug run -c {out} --dry-run   (the plan and its time), then "
                   f"ganaug run -c {out}")
    return out, "\n".join(summary)
