"""The small-data regime: train / real-only validation / untouched test, saved as a manifest.

Per class, after a seeded permutation: validation first, then training, then test (the rest, or
`test_per_class` of it). So a larger `n_per_class` extends the smaller one's training set and the
validation set does not depend on it. With `first_per_class` the training images are the first N in
source order and validation and test come from a permutation of the rest. Sources with an official
test partition draw test images from it alone (`official_test`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..config.fingerprints import fingerprint, to_dict
from ..config.sections import DataConfig, SplitConfig
from ..errors import DataError
from .images import ImageSet, image_hashes

PARTS = ("train", "val", "test")
DEFAULT_N_PER_CLASS = 100


def _shrunk_class(cfg: SplitConfig, classes: List[str]) -> Optional[int]:
    """The index of `split.shrink.class`, given as a class name or an index."""
    if cfg.shrink is None:
        return None
    c = cfg.shrink.class_
    if str(c) in classes:
        return classes.index(str(c))
    if isinstance(c, int) and 0 <= c < len(classes):
        return c
    raise DataError(f"split.shrink.class: no class {c!r}; classes are {', '.join(classes)}")


def make_split(ds: ImageSet, cfg: SplitConfig, data_cfg: DataConfig) -> Dict[str, Any]:
    """Choose indices per class and return the manifest (indices, ids and content hashes)."""
    rng = np.random.default_rng(cfg.seed)
    labels = ds.labels.numpy()
    official = cfg.official_test and ds.partition is not None
    part = np.asarray(ds.partition) if official else None
    shrunk = _shrunk_class(cfg, ds.classes)
    chosen: Dict[str, List[int]] = {p: [] for p in PARTS}
    for c, cname in enumerate(ds.classes):
        idx = np.flatnonzero(labels == c)
        pool = idx[part[idx] == "train"] if part is not None else idx
        test_pool = rng.permutation(idx[part[idx] == "test"]) if part is not None else None

        if cfg.fraction is not None:
            n_train = max(1, int(round(cfg.fraction * len(pool))))
        else:
            n_train = cfg.first_per_class or cfg.n_per_class or DEFAULT_N_PER_CLASS
        if shrunk == c:
            assert cfg.shrink is not None
            n_train = max(1, int(round(n_train * cfg.shrink.keep)))
        n_val = cfg.val_per_class
        if n_train + n_val > len(pool):
            key = "first_per_class" if cfg.first_per_class else "fraction" if cfg.fraction else "n_per_class"
            raise DataError(
                f"split.{key}: class '{cname}' has {len(pool)} images"
                f"{' outside the official test set' if part is not None else ''}, fewer than the "
                f"{n_train} training + {n_val} validation asked for; lower split.{key} or split.val_per_class"
            )

        if cfg.first_per_class is not None:
            train = pool[:n_train]
            rest = rng.permutation(pool[n_train:])
            val, rest = rest[:n_val], rest[n_val:]
        else:
            perm = rng.permutation(pool)
            # test_after (a sweep over n_per_class): the test part starts where the largest training part ends
            after = max(n_train, cfg.test_after or 0)
            val, train, rest = perm[:n_val], perm[n_val:n_val + n_train], perm[n_val + after:]
        test = test_pool if test_pool is not None else rest
        if cfg.test_per_class is not None:
            if cfg.test_per_class > len(test):
                raise DataError(
                    f"split.test_per_class: class '{cname}' has {len(test)} images left for testing, "
                    f"fewer than the {cfg.test_per_class} asked for; lower split.test_per_class"
                )
            test = test[:cfg.test_per_class]
        if len(test) == 0:
            raise DataError(
                f"split: class '{cname}' has no images left for the test set; lower split.n_per_class or val_per_class"
            )
        for p, sel in zip(PARTS, (train, val, test)):
            chosen[p] += [int(i) for i in sel]

    manifest: Dict[str, Any] = {
        "version": 1,
        "source": data_cfg.source,
        "data": to_dict(data_cfg),
        "split": to_dict(cfg),
        "classes": list(ds.classes),
        "shape": list(ds.shape),
        "skipped": list(ds.skipped),
        "counts": {},
    }
    all_hashes: Dict[str, List[str]] = {}
    for p in PARTS:
        sel = sorted(chosen[p])
        hashes = image_hashes(ds.images[sel]) if sel else []
        all_hashes[p] = hashes
        manifest[p] = {"indices": sel, "ids": [ds.ids[i] for i in sel], "hashes": hashes}
        counts = np.bincount(labels[sel], minlength=len(ds.classes)) if sel else np.zeros(len(ds.classes), int)
        manifest["counts"][p] = {name: int(n) for name, n in zip(ds.classes, counts)}
    # Identical pixels in train and test (some public sets have them) would flatter every arm alike.
    test_set = set(all_hashes["test"])
    manifest["duplicates_train_test"] = sum(h in test_set for h in all_hashes["train"])
    manifest["fingerprint"] = fingerprint({p: all_hashes[p] for p in PARTS} | {"classes": ds.classes})
    check_disjoint(manifest)
    return manifest


def check_disjoint(manifest: Dict[str, Any]) -> None:
    sets = {p: set(manifest[p]["indices"]) for p in PARTS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        overlap = sets[a] & sets[b]
        if overlap:
            raise DataError(f"split manifest: {a} and {b} share {len(overlap)} images (e.g. index {min(overlap)})")


@dataclass
class Part:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)


class HeldOut(Part):
    """The test part. Every read of its images is counted, so a classifier run records how many times it
    looked at the test set as the code did it (the audit expects one), not as a constant it declares."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self._images, self.labels, self.reads = images, labels, 0

    @property  # type: ignore[override]
    def images(self) -> torch.Tensor:
        self.reads += 1
        return self._images


@dataclass
class SplitData:
    classes: List[str]
    train: Part
    val: Part
    test: HeldOut
    fingerprint: str


def apply_split(ds: ImageSet, manifest: Dict[str, Any], where: str) -> SplitData:
    """Select the manifest's images from a freshly loaded source, checking each one's content hash."""
    if list(ds.classes) != manifest["classes"]:
        raise DataError(
            f"{where}: the source's classes ({', '.join(ds.classes)}) differ from the split's "
            f"({', '.join(manifest['classes'])}); the data changed since `ganaug split` - redo the split with --force"
        )
    parts = {}
    for p in PARTS:
        sel = manifest[p]["indices"]
        if sel and max(sel) >= len(ds.images):
            raise DataError(f"{where}: the source has {len(ds.images)} images but the split uses index {max(sel)}; "
                            "the data changed since `ganaug split` - redo the split with --force")
        images = ds.images[sel]
        changed = [i for i, (h, want) in enumerate(zip(image_hashes(images), manifest[p]["hashes"])) if h != want]
        if changed:
            names = ", ".join(manifest[p]["ids"][i] for i in changed[:5])
            raise DataError(
                f"{where}: {len(changed)} {p} image(s) changed since the split was made ({names}"
                f"{' ...' if len(changed) > 5 else ''}); restore them or redo the split with --force"
            )
        parts[p] = (HeldOut if p == "test" else Part)(images=images.contiguous(), labels=ds.labels[sel].clone())
    return SplitData(classes=list(ds.classes), fingerprint=manifest["fingerprint"], **parts)
