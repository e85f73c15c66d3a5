"""Synthetic sets on disk: one tensor file for fast loading plus a PNG tree in ImageFolder layout.

A synthetic set is uint8 (N, C, H, W) exactly like the real images; `load_synthetic` refuses anything
else, so fakes cannot reach a classifier in another dtype, range, size or channel count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..utils import atomic_torch_save

TENSOR_FILE = "samples.pt"


def save_synthetic(folder: Path, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                   meta: Dict[str, Any], png: bool) -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"synthetic images must be uint8 like the real ones, got {images.dtype}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"images": images.contiguous(), "labels": labels.to(torch.int64),
                       "classes": list(classes), **meta}, folder / TENSOR_FILE)
    if png:
        for name in classes:
            (folder / "images" / name).mkdir(parents=True, exist_ok=True)
        counters = [0] * len(classes)
        arr = images.permute(0, 2, 3, 1).numpy()
        for img, y in zip(arr, labels.tolist()):
            name = classes[y]
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
                folder / "images" / name / f"{counters[y]:05d}.png")
            counters[y] += 1


def load_synthetic(folder: Path, shape: Tuple[int, int, int], classes: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load a sampled set and check it matches the real images' dtype, range, shape and classes."""
    path = Path(folder) / TENSOR_FILE
    if not path.is_file():
        raise DataError(f"no synthetic set at '{path}'; run `ganaug sample --config ...` first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"synthetic set '{path}' cannot be read ({type(e).__name__}); sample again with --force") from None
    images, labels = blob.get("images"), blob.get("labels")
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(f"synthetic set '{path}' has no images/labels tensors; sample again with --force")
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
    if len(images) and int(images.max()) <= 1:
        raise DataError(f"synthetic set '{path}' has values only in 0..1: it looks divided by 255; "
                        "images must span 0..255 like the real ones")
    if blob.get("classes") != list(classes):
        raise DataError(f"synthetic set '{path}' has classes {blob.get('classes')} but the split has {classes}")
    if len(labels) != len(images) or (len(labels) and (labels.min() < 0 or labels.max() >= len(classes))):
        raise DataError(f"synthetic set '{path}' has labels that do not match its images or classes")
    return images, labels.to(torch.int64)


def class_counts(labels: torch.Tensor, num_classes: int) -> List[int]:
    return np.bincount(labels.numpy(), minlength=num_classes).tolist()
