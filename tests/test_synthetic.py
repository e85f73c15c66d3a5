"""Synthetic sets: uint8 like the real images, an ImageFolder tree, and loaders that refuse mis-scaled fakes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from ganaug.data import to_uint8
from ganaug.data.synthetic import load_synthetic, save_synthetic
from ganaug.errors import DataError

CLASSES = ["a", "b"]


def fakes(n: int = 6, channels: int = 1):
    g = torch.Generator().manual_seed(0)
    x = to_uint8(torch.rand(n, channels, 8, 8, generator=g) * 2 - 1)
    return x, torch.arange(2).repeat(n // 2)


def test_round_trip_and_imagefolder_layout(tmp_path: Path) -> None:
    x, y = fakes(channels=3)
    save_synthetic(tmp_path, x, y, CLASSES, {"note": 1}, png=True)
    lx, ly = load_synthetic(tmp_path, (3, 8, 8), CLASSES)
    assert lx.dtype == torch.uint8 and torch.equal(lx, x) and torch.equal(ly, y)
    folder = ImageFolder(str(tmp_path / "images"))
    assert folder.classes == CLASSES and len(folder) == 6
    png = np.asarray(Image.open(tmp_path / "images" / "b" / "00000.png"))
    assert np.array_equal(png, x[1].permute(1, 2, 0).numpy())  # the first fake of class b, lossless


def test_refuses_float_or_divided_by_255(tmp_path: Path) -> None:
    x, y = fakes()
    torch.save({"images": x.float() / 255, "labels": y, "classes": CLASSES}, tmp_path / "samples.pt")
    with pytest.raises(DataError, match="holds torch.float32 images; real images are uint8"):
        load_synthetic(tmp_path, (1, 8, 8), CLASSES)
    torch.save({"images": (x.float() / 255).round().to(torch.uint8), "labels": y, "classes": CLASSES},
               tmp_path / "samples.pt")
    with pytest.raises(DataError, match="looks divided by 255"):
        load_synthetic(tmp_path, (1, 8, 8), CLASSES)
    with pytest.raises(TypeError):
        save_synthetic(tmp_path / "f", x.float(), y, CLASSES, {}, png=False)


def test_refuses_other_sizes_channels_or_classes(tmp_path: Path) -> None:
    x, y = fakes()
    save_synthetic(tmp_path, x, y, CLASSES, {}, png=False)
    with pytest.raises(DataError, match=r"\(1, 8, 8\) \(C, H, W\) but the real ones are \(3, 8, 8\)"):
        load_synthetic(tmp_path, (3, 8, 8), CLASSES)
    with pytest.raises(DataError, match="has classes"):
        load_synthetic(tmp_path, (1, 8, 8), ["a", "c"])
    with pytest.raises(DataError, match="run `ganaug sample"):
        load_synthetic(tmp_path / "none", (1, 8, 8), CLASSES)
