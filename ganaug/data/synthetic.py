"""Synthetic sets on disk: the images and labels as .npy files (written in chunks, read memory-mapped), a small
`samples.pt` that says what they are, and a PNG tree in ImageFolder layout.

A synthetic set is uint8 (N, C, H, W) exactly like the real images; `load_synthetic` refuses anything else,
so fakes cannot reach a classifier in another dtype, range, size or channel count. A set larger than memory
can be written (`SetWriter` appends chunk by chunk) and read: it is mapped, not copied, so classifier runs
in several processes share one copy of its pages. Sets written before this layout (images inside
`samples.pt`) still load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..utils import atomic_open, atomic_torch_save

TENSOR_FILE = "samples.pt"  # what the set is: classes, shape, count, provenance; and the two array files' names
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
OUTPUTS = (TENSOR_FILE, IMAGES_FILE, LABELS_FILE)  # what a later stage reads, hashed in stage.json
SOFT_FILE = "soft_labels.npy"  # edited sets only: float32 (N, classes), rows sum to 1; meta "soft_labels" names it
EDITS_FILE = "edits.npz"  # edited sets only: each fake's source image, strength and labels; meta "edits" names it


def folder_name(cls: str) -> str:
    """A class name as one folder name (Fashion-MNIST's 'T-shirt/top' would otherwise make two folders)."""
    return cls.replace("/", "-").replace("\\", "-").strip() or "_"


class SetWriter:
    """Writes a synthetic set chunk by chunk: .npy headers first, then each chunk's bytes (and PNGs), so no more
    than one chunk is ever held beyond the files."""

    def __init__(self, folder: Path, n: int, shape: Tuple[int, int, int], classes: Sequence[str], png: bool):
        self.folder, self.n, self.shape, self.classes, self.png = Path(folder), n, tuple(shape), list(classes), png
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = 0
        self._files = []
        for name, dtype, dims in ((IMAGES_FILE, np.uint8, (n, *shape)), (LABELS_FILE, np.int64, (n,))):
            ctx = atomic_open(self.folder / name, "wb")
            f = ctx.__enter__()
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                     "fortran_order": False, "shape": dims})
            self._files.append((ctx, f))
        self.dirs = [self.folder / "images" / folder_name(c) for c in self.classes]
        self.counters = [0] * len(self.classes)
        if png:
            for d in self.dirs:
                d.mkdir(parents=True, exist_ok=True)

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"synthetic images must be uint8 like the real ones, got {images.dtype}")
        if self.written + len(images) > self.n or tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"chunk of {tuple(images.shape)} does not fit a set of {self.n} x {self.shape}")
        (_, fi), (_, fl) = self._files
        fi.write(images.contiguous().numpy().tobytes())
        fl.write(labels.to(torch.int64).contiguous().numpy().tobytes())
        self.written += len(images)
        if self.png:
            for img, y in zip(images.permute(0, 2, 3, 1).numpy(), labels.tolist()):
                Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(self.dirs[y] / f"{self.counters[y]:05d}.png")
                self.counters[y] += 1

    def close(self, meta: Dict[str, Any]) -> None:
        if self.written != self.n:
            raise ValueError(f"wrote {self.written} of {self.n} synthetic images")
        for ctx, _ in self._files:
            ctx.__exit__(None, None, None)
        atomic_torch_save({"format": 2, "images": IMAGES_FILE, "labels": LABELS_FILE, "n": self.n,
                           "shape": list(self.shape), "classes": self.classes, **meta}, self.folder / TENSOR_FILE)


def save_synthetic(folder: Path, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                   meta: Dict[str, Any], png: bool) -> None:
    """A whole set at once (small sets, tests): the same files the chunked writer makes."""
    if images.dtype != torch.uint8:
        raise TypeError(f"synthetic images must be uint8 like the real ones, got {images.dtype}")
    writer = SetWriter(folder, len(images), tuple(images.shape[1:]), classes, png)
    writer.add(images, labels)
    writer.close(meta)


def read_synthetic(folder: Path) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, Any]]:
    """(images, labels, meta) of a set as written, images memory-mapped (copy-on-write: pages shared between
    processes until written); a set of the older layout (arrays inside samples.pt) is read whole."""
    path = Path(folder) / TENSOR_FILE
    if not path.is_file():
        raise DataError(f"no synthetic set at '{path}'; run `ganaug sample -c CONFIG` first")
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"synthetic set '{path}' cannot be read ({type(e).__name__}); sample again with --force") from None
    if not isinstance(meta, dict):
        raise DataError(f"synthetic set '{path}' is not a ganaug synthetic set; sample again with --force")
    if meta.get("format") == 2 and isinstance(meta.get("images"), str):
        try:
            images = torch.from_numpy(np.load(Path(folder) / meta["images"], mmap_mode="c"))
            labels = torch.from_numpy(np.load(Path(folder) / meta["labels"], mmap_mode="c"))
        except (OSError, ValueError) as e:
            raise DataError(f"synthetic set '{folder}': its arrays cannot be read ({e}); sample again with --force") from None
        return images, labels, meta
    images, labels = meta.get("images"), meta.get("labels")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(f"synthetic set '{path}' has no images/labels tensors; sample again with --force")
    return images, labels, meta


def load_synthetic(folder: Path, shape: Tuple[int, int, int], classes: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load a sampled set and check it matches the real images' dtype, range, shape and classes."""
    path = Path(folder) / TENSOR_FILE
    images, labels, blob = read_synthetic(folder)
    if images.dtype != torch.uint8:
        raise DataError(
            f"synthetic set '{path}' holds {images.dtype} images; real images are uint8 in [0, 255]. "
            "Convert with ganaug.data.to_uint8 (a [0, 1] or [-1, 1] float set would be mis-scaled)"
        )
    if tuple(images.shape[1:]) != tuple(shape):
        raise DataError(
            f"synthetic set '{path}' has images of {tuple(images.shape[1:])} (C, H, W) but the real ones are "
            f"{tuple(shape)}; sample from a GAN trained on this split"
        )
    if len(images) and int(images[:10_000].max()) <= 1:  # the first images: a mapped set is not read whole
        raise DataError(f"synthetic set '{path}' has values only in 0..1: it looks divided by 255; "
                        "images must span 0..255 like the real ones")
    if blob.get("classes") != list(classes):
        raise DataError(f"synthetic set '{path}' has classes {blob.get('classes')} but the split has {classes}")
    if len(labels) != len(images) or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes))):
        raise DataError(f"synthetic set '{path}' has labels that do not match its images or classes")
    return images, labels.to(torch.int64)


def read_soft_labels(folder: Path) -> Optional[torch.Tensor]:
    """A set's soft labels, float32 (N, C) memory-mapped, checked against its labels and classes; None when the
    set has none (its meta names no "soft_labels" file)."""
    _, labels, meta = read_synthetic(folder)
    name = meta.get("soft_labels")
    if not name:
        return None
    path = Path(folder) / name
    redo = "; sample again with --force"
    try:
        soft = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as e:
        raise DataError(f"soft labels '{path}' cannot be read ({type(e).__name__}){redo}") from None
    n, k = len(labels), len(meta.get("classes") or [])
    if soft.dtype != np.float32 or soft.shape != (n, k):
        raise DataError(f"soft labels '{path}' are {soft.dtype} {soft.shape} but the set has {n} fakes of {k} classes{redo}")
    # Checked in chunks: a mapped set is not read whole at once.
    for i in range(0, n, 65_536):
        chunk = np.asarray(soft[i:i + 65_536], dtype=np.float64)
        if not np.isfinite(chunk).all() or (chunk < 0).any() or (chunk > 1).any():
            raise DataError(f"soft labels '{path}' have entries outside [0, 1]{redo}")
        worst = float(np.abs(chunk.sum(1) - 1).max()) if len(chunk) else 0.0
        if worst > 1e-4:
            raise DataError(f"soft labels '{path}' have rows that do not sum to 1 (off by {worst:.3g}){redo}")
    return torch.from_numpy(soft)


def class_counts(labels: torch.Tensor, num_classes: int) -> List[int]:
    return np.bincount(labels.numpy(), minlength=num_classes).tolist()
