"""The training images as the official dataset_tool.py writes them: a zip of PNGs and their labels."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, List

import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import DataError
from ...utils import atomic_open
from .env import PathLike


def official_resolution(side: int) -> int:
    """The side the official code trains at: `side` rounded up to a power of two."""
    return 2 ** math.ceil(math.log2(max(int(side), 1)))


def write_dataset_zip(images: torch.Tensor, labels: torch.Tensor, path: PathLike) -> Path:
    """Write uint8 images (N, C, H, W) and int64 labels (N,) as the official dataset zip; return its path.

    The format is dataset_tool.py's: an uncompressed (ZIP_STORED) zip of PNGs (compress_level 0) named
    `{idx // 1000:05d}/img{idx:08d}.png`, grayscale as mode 'L' and RGB as 'RGB', and `dataset.json` holding
    `{"labels": [[name, label], ...]}` in image order. The official loader needs square images whose side is
    a power of two, so a side that is not one is resized up to the next (bilinear, antialiased), as the native
    stylegan2 does; `load_official_generator` scales samples back down. Entries carry a fixed timestamp, so the
    same images give the same bytes. Written atomically (a temporary file renamed into place).
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise DataError(f"the official dataset needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = (int(s) for s in images.shape)
    if h != w:
        raise DataError(f"the official dataset needs square images, got {h}x{w}; set data.resolution")
    if c not in (1, 3):
        raise DataError(f"the official dataset needs 1 or 3 channels, got {c}; set data.channels")
    if labels.shape != (n,):
        raise DataError(f"got {n} images but {tuple(labels.shape)} labels")
    side = official_resolution(h)
    mode = "L" if c == 1 else "RGB"
    entries: List[List[Any]] = []
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for start in range(0, n, 1024):
            chunk = images[start:start + 1024]
            if side != h:
                chunk = F.interpolate(chunk.float(), size=(side, side), mode="bilinear", align_corners=False,
                                      antialias=True).round_().clamp_(0, 255).to(torch.uint8)
            arrays = chunk.permute(0, 2, 3, 1).contiguous().numpy()
            for j, arr in enumerate(arrays):
                idx = start + j
                name = f"{idx // 1000:05d}/img{idx:08d}.png"
                buf = io.BytesIO()
                Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode).save(buf, format="png", compress_level=0,
                                                                           optimize=False)
                _write_entry(zf, name, buf.getvalue())
                entries.append([name, int(labels[idx])])
        _write_entry(zf, "dataset.json", json.dumps({"labels": entries}).encode())
    return Path(path)


def _write_entry(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16  # -rw-r--r-- when unzipped
    zf.writestr(info, data)
