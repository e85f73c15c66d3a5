"""Command `export`: the split's training images in another tool's dataset format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..config import Config
from ..errors import ConfigError
from ..gans.official import official_resolution, write_dataset_zip
from .common import SPLIT, echo, load_split_data, paths, up_to_date
from .split import run_split

EXPORT_FORMATS = ("stylegan2-ada",)


def run_export(cfg: Config, fmt: str = "stylegan2-ada", out: Optional[Path] = None) -> Path:
    """Write the split's training images (only those) as `fmt`; default `<out_dir>/export/<fmt>.zip`.

    stylegan2-ada: the zip NVlabs' dataset_tool.py makes, for `train.py --data=... --cond=1`; labels are the
    class indices of the split (names in the printed legend).
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format '{fmt}' is unknown; use one of {', '.join(EXPORT_FORMATS)}")
    if not up_to_date(cfg, SPLIT):  # no split yet: make it (the export needs to know which images are training images)
        run_split(cfg)
    data, _ = load_split_data(cfg)
    images, labels = data.train.images, data.train.labels
    path = Path(out) if out is not None else paths(cfg).root / "export" / f"{fmt}.zip"
    write_dataset_zip(images, labels, path)

    c, h, w = (int(s) for s in images.shape[1:])
    side = official_resolution(h)
    counts = torch.bincount(labels, minlength=len(data.classes)).tolist()
    per_class = f"{counts[0]} per class" if len(set(counts)) == 1 else ", ".join(map(str, counts)) + " per class"
    echo(f"export: {len(labels)} training images ({per_class}, {len(data.classes)} classes) of {c}x{h}x{w}"
         f"{f', resized to {side}x{side} (the official loader needs a power of two)' if side != h else ''} -> {path}")
    shown = ", ".join(f"{i} = {name}" for i, name in enumerate(data.classes[:20]))
    echo(f"export: labels {shown}{', ...' if len(data.classes) > 20 else ''}")
    return path
