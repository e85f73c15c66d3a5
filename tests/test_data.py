"""Data sources load into uint8 (N, C, H, W) tensors; bad folders and files give named errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganaug.config import DataConfig
from ganaug.data import load_dataset, to_float, to_uint8
from ganaug.data.images import conform
from ganaug.errors import ConfigError, DataError

from .conftest import CLASSES, make_folder, pattern


def test_mnist5k_is_the_real_bundled_mnist_subset() -> None:
    ds = load_dataset(DataConfig(source="mnist-5k"))
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert bool((ds.labels[:-1] <= ds.labels[1:]).all())  # rows sorted by label
    assert int(ds.images.max()) == 255 and ds.images.float().mean() > 20  # real strokes on black


def test_digits_rescaled_to_full_range() -> None:
    ds = load_dataset(DataConfig(source="digits"))
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert int(ds.images.max()) == 255 and len(ds.classes) == 10


def test_digits_conformed_to_resolution_and_channels() -> None:
    ds = load_dataset(DataConfig(source="digits", resolution=16, channels=3))
    assert ds.images.shape == (1797, 3, 16, 16) and ds.images.dtype == torch.uint8


def test_imagefolder_gray_and_rgb(tmp_path: Path) -> None:
    gray = load_dataset(DataConfig(source="imagefolder", root=str(make_folder(tmp_path / "g")), resolution=16))
    assert gray.images.shape == (42, 1, 16, 16) and gray.classes == list(CLASSES)
    assert gray.ids[0] == "bars/img000.png"
    rgb = load_dataset(DataConfig(source="imagefolder", root=str(make_folder(tmp_path / "c", rgb=True)), resolution=12))
    assert rgb.images.shape == (42, 3, 12, 12) and rgb.images.dtype == torch.uint8


def test_imagefolder_mixed_modes_are_converted_and_said(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "m")
    Image.new("RGB", (20, 16), (200, 10, 10)).save(root / "bars" / "colour.jpg")
    ds = load_dataset(DataConfig(source="imagefolder", root=str(root), resolution=16))
    assert ds.images.shape[1] == 3
    assert any("mixed modes" in n and "converted to RGB" in n for n in ds.notes)


def test_imagefolder_empty_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "e")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder '.*empty' has no images"):
        load_dataset(DataConfig(source="imagefolder", root=str(root), resolution=16))


def test_imagefolder_corrupt_image_named_or_skipped(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "x")
    (root / "columns" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"cannot read image '.*columns/broken.png'.*bad_images: skip"):
        load_dataset(DataConfig(source="imagefolder", root=str(root), resolution=16))
    ds = load_dataset(DataConfig(source="imagefolder", root=str(root), resolution=16, bad_images="skip"))
    assert ds.skipped == ["columns/broken.png"] and len(ds.images) == 42
    assert any("skipped 1 unreadable" in n for n in ds.notes)


def test_imagefolder_truncated_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "t")
    good = (root / "bars" / "img000.png").read_bytes()
    (root / "bars" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut.png"):
        load_dataset(DataConfig(source="imagefolder", root=str(root), resolution=16))


def test_imagefolder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path / "nope"), resolution=16))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path / "flat"), resolution=16))
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(DataError, match="at least two"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path / "one"), resolution=16))
    with pytest.raises(ConfigError, match="data.root"):
        load_dataset(DataConfig(source="imagefolder", resolution=16))
    with pytest.raises(ConfigError, match="data.resolution"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path)))


def test_torchvision_set_offline_says_where_to_put_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"files not found under '.*tv'.*train-images-idx3-ubyte.*as it is or \.gz"):
        load_dataset(DataConfig(source="mnist", root=str(tmp_path / "tv"), download=False))

    import torchvision.datasets as tvd

    def no_network(self):  # what an offline machine does when torchvision tries to download
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.CIFAR10, "download", no_network)
    with pytest.raises(DataError, match=r"download failed \(OSError\); with no network, put cifar-10-python.tar.gz"):
        load_dataset(DataConfig(source="cifar10", root=str(tmp_path / "tv")))


def test_float_conversions_round_trip() -> None:
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)
    with pytest.raises(TypeError):
        to_float(f)
    with pytest.raises(TypeError):
        to_uint8(x)


def test_conform_resizes_and_converts() -> None:
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    y = conform(x, 16, 1)
    assert y.shape == (2, 1, 16, 16) and y.dtype == torch.uint8


def test_imagefolder_labels_from_file_names(tmp_path: Path) -> None:
    """UTKFace names files '<age>_<gender>_<race>_<date>.jpg'; a regex group picks the label."""
    root = tmp_path / "faces"
    (root / "part1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["25_0_1_2017.png", "31_1_0_2017.png", "8_1_2_2016.png", "40_0_3_2017.png", "notes_face.png"]
    for i, name in enumerate(names):
        Image.fromarray(pattern(i % 3, rng)).save(root / "part1" / name)
    cfg = DataConfig(source="imagefolder", root=str(root), resolution=16, label_regex=r"^\d+_(\d)_")
    with pytest.raises(DataError, match=r"matches no label in 1 file name\(s\) .*'part1/notes_face.png'.*bad_images: skip"):
        load_dataset(cfg)
    cfg.bad_images = "skip"
    ds = load_dataset(cfg)
    assert ds.classes == ["0", "1"] and len(ds.labels) == 4
    assert dict(zip(ds.ids, ds.labels.tolist())) == {"part1/25_0_1_2017.png": 0, "part1/31_1_0_2017.png": 1,
                                                    "part1/40_0_3_2017.png": 0, "part1/8_1_2_2016.png": 1}
    assert ds.skipped == ["part1/notes_face.png"]
    named = DataConfig(source="imagefolder", root=str(root), resolution=16, label_regex=r"_(?P<label>\d)_\d+\.png$",
                       bad_images="skip")
    assert load_dataset(named).classes == ["0", "1", "2", "3"]  # the named group: race
    one = DataConfig(source="imagefolder", root=str(root), resolution=16, label_regex=r"_(\d)_\d_2017", bad_images="skip")
    assert load_dataset(one).classes == ["0", "1"]  # the gender digit again, found by another pattern
    none = DataConfig(source="imagefolder", root=str(root), resolution=16, label_regex=r"^(9)", bad_images="skip")
    with pytest.raises(DataError, match="finds 0 label"):
        load_dataset(none)
