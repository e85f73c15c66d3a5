"""Photo folders as they come: any size and bit depth, EXIF-rotated, multi-frame, CMYK; decoded once and
cached; Fashion-MNIST and MNIST from IDX files offline; and the folder papercuts."""

from __future__ import annotations

import gzip
import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ganaug.config import DataConfig
from ganaug.data import load_dataset
from ganaug.data.decode import decode
from ganaug.errors import DataError

from .conftest import invoke, make_folder, tiny_config, write_yaml


def _folder(tmp_path: Path, write) -> DataConfig:
    """Two class folders with an image each written by `write(path, class_index)`."""
    for c, name in enumerate(("a", "b")):
        (tmp_path / "img" / name).mkdir(parents=True)
        write(tmp_path / "img" / name, c)
    return DataConfig(source="imagefolder", root=str(tmp_path / "img"), resolution=16)


# ----------------------------------------------------------------------------------------------------
# Bit depth, orientation, frames and modes.


def test_a_16_bit_png_keeps_its_mid_grey(tmp_path: Path) -> None:
    def write(d: Path, c: int) -> None:
        Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(d / "scan.png")  # mid-grey on 0..65535

    ds = load_dataset(_folder(tmp_path, write))
    assert ds.images.dtype == torch.uint8 and ds.images.shape[1] == 1
    assert int(ds.images.min()) == int(ds.images.max()) == 128  # not clipped to 255 (all white)
    assert any("rescaled 2 high-bit-depth image(s) to 0..255 (I;16, by 16-bit range 0..65535)" in n for n in ds.notes)


def test_a_32_bit_float_tiff_keeps_its_mid_grey_and_intensity_modes(tmp_path: Path) -> None:
    def write(d: Path, c: int) -> None:
        ramp = np.linspace(0.25, 0.75, 40 * 40, dtype=np.float32).reshape(40, 40)
        Image.fromarray(ramp, mode="F").save(d / "map.tif")

    cfg = _folder(tmp_path, write)
    ds = load_dataset(cfg)
    assert abs(float(ds.images.float().mean()) - 127.5) < 2  # 0.5 * 255 on average
    assert int(ds.images.max()) < 200 and int(ds.images.min()) > 55  # 0.25..0.75 by the type's [0, 1]
    cfg.intensity = "minmax"
    stretched = load_dataset(cfg)
    assert int(stretched.images.max()) >= 250 and int(stretched.images.min()) <= 5  # its own range, stretched
    cfg.intensity = "percentile"
    assert int(load_dataset(cfg).images.max()) >= 250


def test_an_exif_rotated_jpeg_loads_upright(tmp_path: Path) -> None:
    # The sensor's pixels: a white bar along the top, and an EXIF tag saying "rotate 90 degrees clockwise to view"
    # (orientation 6): upright, the bar is down the right side.
    raw = np.zeros((60, 80, 3), np.uint8)
    raw[:10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6

    def write(d: Path, c: int) -> None:
        Image.fromarray(raw).save(d / "phone.jpg", exif=exif.tobytes(), quality=95)

    ds = load_dataset(_folder(tmp_path, write))
    img = ds.images[0].float().mean(0)  # (16, 16), centre-cropped from the upright 60 x 80 -> 80 x 60
    assert img[:, -3:].mean() > 200 and img[:, :3].mean() < 50 and img[:3, 4:12].mean() < 50
    assert any("turned 2 image(s) upright by their EXIF orientation" in n for n in ds.notes)


def test_multi_frame_images_take_their_first_frame_and_cmyk_converts(tmp_path: Path) -> None:
    def write(d: Path, c: int) -> None:
        frames = [Image.new("L", (20, 20), v) for v in (200, 30, 90)]
        frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
        Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(d / "print.jpg")  # pure red in CMYK

    ds = load_dataset(_folder(tmp_path, write))
    assert ds.images.shape[1] == 3  # a colour image among them: RGB
    gif = ds.images[ds.ids.index("a/anim.gif")]
    assert abs(int(gif[0].float().mean()) - 200) <= 2  # the first frame, not the last
    red = ds.images[ds.ids.index("a/print.jpg")].float().mean(dim=(1, 2))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert any("took the first frame of 2 multi-frame image(s)" in n for n in ds.notes)


def test_a_decompression_bomb_names_the_file_and_the_setting(tmp_path: Path) -> None:
    def write(d: Path, c: int) -> None:
        Image.new("L", (300, 300), 7).save(d / "huge.png")

    cfg = _folder(tmp_path, write)
    cfg.max_image_pixels = 1000  # 90,000 pixels is over twice this limit
    with pytest.raises(DataError) as e:
        load_dataset(cfg)
    msg = str(e.value)
    assert "huge.png" in msg and "90,000 pixels" in msg and "data.max_image_pixels" in msg


def test_large_jpegs_decode_in_draft_mode() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.jpg"
        Image.new("RGB", (2000, 1500), (10, 200, 30)).save(path)
        out = decode(str(path), 32, "RGB")
        assert out["array"].shape == (3, 32, 32) and out["info"]["draft"][1] < 1500 // 3  # decoded at reduced scale
        assert abs(int(out["array"][1].mean()) - 200) <= 3


# ----------------------------------------------------------------------------------------------------
# Decoded once: the cache.


def test_later_stages_load_the_decoded_folder_from_the_cache_and_catch_changed_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images")
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, folder, arms=[{"name": "real", "data": "real"}],
                                                      data={"workers": 2}))
    r = invoke("split", "-c", str(cfg))
    assert r.exit_code == 0, r.output
    caches = list((tmp_path / "run" / "split" / "cache").glob("imagefolder-*.pt"))
    assert len(caches) == 1
    from ganaug.config import load_config
    from ganaug.stages.split import load_split_data

    c = load_config(cfg)
    calls = []
    import ganaug.data.folder as folder_mod

    real_decode = folder_mod._decode_all
    folder_mod._decode_all = lambda *a, **k: calls.append(1) or real_decode(*a, **k)
    try:
        load_split_data(c)  # a later stage: the cache, no decoding
        assert calls == []
        # A file changed (new pixels, new mtime): the cache key changes, the folder is decoded again, and the
        # manifest's content hash names the changed training image.
        manifest = json.loads((tmp_path / "run" / "split" / "manifest.json").read_text())
        changed = folder / manifest["train"]["ids"][0]
        Image.fromarray(np.full((16, 16), 77, np.uint8)).save(changed)
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        with pytest.raises(DataError, match=r"1 train image\(s\) changed since the split was made"):
            load_split_data(c)
        assert calls == [1]
        (folder / "bars" / "extra.png").write_bytes((folder / "bars" / "img000.png").read_bytes())  # a file added
        with pytest.raises(DataError):
            load_split_data(c)
    finally:
        folder_mod._decode_all = real_decode


def test_the_pool_and_one_process_decode_the_same(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "images", per_class=30, rgb=True)
    one = load_dataset(DataConfig(source="imagefolder", root=str(folder), resolution=12, workers=1))
    pool = load_dataset(DataConfig(source="imagefolder", root=str(folder), resolution=12, workers=2))
    assert torch.equal(one.images, pool.images) and one.ids == pool.ids and torch.equal(one.labels, pool.labels)


# ----------------------------------------------------------------------------------------------------
# Fashion-MNIST and MNIST from IDX files.


def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = head + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("source, layout, gz", [("fashion-mnist", "flat", True), ("fashion-mnist", "torchvision", False),
                                                ("mnist", "torchvision", True)])
def test_idx_files_are_read_offline(tmp_path: Path, source: str, layout: str, gz: bool) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    folder = root / {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[source] / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True)
    xtr, ytr = rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10
    xte, yte = rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10
    for stem, arr in (("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)):
        _idx(folder / stem, arr, gz)
    ds = load_dataset(DataConfig(source=source, root=str(root), download=False))
    assert ds.images.shape == (50, 1, 28, 28) and torch.equal(ds.images[0, 0], torch.from_numpy(xtr[0].astype(np.uint8)))
    assert ds.labels.tolist() == ytr.tolist() + yte.tolist() and ds.partition == ["train"] * 30 + ["test"] * 20
    assert len(ds.classes) == 10 and ds.classes[0] == ("T-shirt/top" if source == "fashion-mnist" else "0 - zero")


def test_the_offline_error_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(source="fashion-mnist", root=str(tmp_path / "none"), download=False))
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and ".gz" in msg and "FashionMNIST/raw" in msg


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debians_fashion_mnist_is_found_without_a_root() -> None:
    ds = load_dataset(DataConfig(source="fashion-mnist", download=False))
    assert ds.images.shape == (70000, 1, 28, 28) and ds.partition.count("test") == 10000


# ----------------------------------------------------------------------------------------------------
# Papercuts.


def test_a_root_one_level_too_high_suggests_the_subfolder(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos" / "train")
    with pytest.raises(DataError, match=r"one class folder \('train'\).*set data.root: .*photos/train"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path / "photos"), resolution=16))
    make_folder(tmp_path / "photos" / "test")
    with pytest.raises(DataError, match=r"holds folders \(test, train\) that each hold class folders \(bars, columns, "
                                        r"diagonal\), not images; .*data.root: .*photos/test"):
        load_dataset(DataConfig(source="imagefolder", root=str(tmp_path / "photos"), resolution=16))


def test_export_makes_the_split_when_there_is_none(config_file: Path, tmp_path: Path) -> None:
    r = invoke("export", "-c", str(config_file), "--format", "stylegan2-ada")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "split" / "manifest.json").is_file()
    assert (tmp_path / "run" / "export" / "stylegan2-ada.zip").is_file()


def test_the_mix_shorthand_reuses_the_configs_identical_arm(config_file: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load(config_file.read_text())
    cfg["arms"] = [{"name": "real", "data": "real"}, {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}}]
    path = write_yaml(tmp_path / "c.yaml", cfg)
    for cmd in ("split", "train-gan", "sample"):
        assert invoke(cmd, "-c", str(path)).exit_code == 0
    assert invoke("train-clf", "-c", str(path), "--arm", "mixed-0.5").exit_code == 0
    r = invoke("train-clf", "-c", str(path), "--mix", "p_real=0.5")
    assert r.exit_code == 0 and "1 run(s) up to date" in r.stderr, r.output
    assert sorted(p.name for p in (tmp_path / "run" / "clf").iterdir()) == ["mixed-0.5"]  # no mixed-p0.5 copy
