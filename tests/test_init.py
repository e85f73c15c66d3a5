"""`ganaug init FOLDER`: folders the test writes (balanced, one tiny class, a broken file, grayscale, 16-bit) give a
config that `run --dry-run` accepts and `split` can cut; what cannot give one is one line, exit 2."""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import yaml
from PIL import Image

from ganaug.config import load_config

from .conftest import invoke, ok


def photos(root: Path, counts: Dict[str, int], mode: str = "RGB", size: tuple = (40, 30), seed: int = 0) -> Path:
    """A folder of class subfolders of noise images: RGB or L (8-bit) or I;16 (16-bit PNGs)."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            h, w = size[1], size[0]
            if mode == "RGB":
                Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(root / cls / f"{i}.jpg")
            elif mode == "L":
                Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).save(root / cls / f"{i}.png")
            else:
                Image.fromarray((rng.random((h, w)) * 4000).astype(np.uint16)).save(root / cls / f"{i}.png")
    return root


def init_and_check(folder: Path, out: Path) -> dict:
    """init, then `run --dry-run` and `split` on the written config; returns the config as YAML data."""
    r = ok("init", str(folder), "-o", str(out))
    assert f"wrote {out}" in r.output
    data = yaml.safe_load(out.read_text())
    data["out_dir"] = str(out.parent / "run")  # the run folder inside the test's folder
    out.write_text(out.read_text().replace("out_dir: runs/", f"out_dir: {out.parent}/run-"))
    dry = ok("run", "-c", str(out), "--dry-run")
    assert "warning" not in dry.stderr and "train-clf mixed-0.8-aug seed 4" in dry.output
    ok("split", "-c", str(out))  # the split the config sizes is one the data allows
    return data


def test_a_balanced_colour_folder(tmp_path: Path) -> None:
    folder = photos(tmp_path / "pets", {"cats": 20, "dogs": 20})
    data = init_and_check(folder, tmp_path / "pets.yaml")
    assert data["data"] == {"source": "imagefolder", "root": str(folder.resolve()), "resolution": 30, "channels": 3}
    assert data["split"]["n_per_class"] + data["split"]["val_per_class"] < 20
    assert [a["name"] for a in data["arms"]] == ["real", "synthetic", "mixed-0.8", "real+1000", "real-aug", "mixed-0.8-aug"]
    assert data["seeds"] == [0, 1, 2, 3, 4]
    assert data["gan"]["name"] == "cgan"  # no GPU here
    cfg = load_config(tmp_path / "pets.yaml")
    assert cfg.split.n_per_class == data["split"]["n_per_class"]


def test_large_photos_are_brought_down_and_a_gpu_gets_stylegan2(tmp_path: Path) -> None:
    folder = photos(tmp_path / "big", {"a": 8, "b": 8}, size=(200, 150))
    ok("init", str(folder), "-o", str(tmp_path / "cpu.yaml"), "--device", "cpu")
    assert yaml.safe_load((tmp_path / "cpu.yaml").read_text())["data"]["resolution"] == 32
    ok("init", str(folder), "-o", str(tmp_path / "gpu.yaml"), "--device", "gpu")
    gpu = yaml.safe_load((tmp_path / "gpu.yaml").read_text())
    assert gpu["data"]["resolution"] == 64 and gpu["gan"]["name"] == "stylegan2"
    load_config(tmp_path / "gpu.yaml")


def test_the_split_is_sized_to_the_smallest_class_and_says_so(tmp_path: Path) -> None:
    folder = photos(tmp_path / "uneven", {"big": 40, "tiny": 5})
    data = init_and_check(folder, tmp_path / "uneven.yaml")
    assert data["split"]["n_per_class"] + data["split"]["val_per_class"] <= 5 - 2  # two test images left for 'tiny'
    assert "'tiny' (5 images)" in (tmp_path / "uneven.yaml").read_text()


def test_a_class_too_small_to_split_is_one_line(tmp_path: Path) -> None:
    folder = photos(tmp_path / "small", {"a": 10, "b": 3})
    r = invoke("init", str(folder), "-o", str(tmp_path / "x.yaml"))
    assert r.exit_code == 2 and "class 'b' has 3 readable image(s)" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "x.yaml").exists()


def test_a_broken_file_is_counted_and_skipped(tmp_path: Path) -> None:
    folder = photos(tmp_path / "broken", {"a": 12, "b": 12})
    (folder / "b" / "bad.jpg").write_bytes(b"not a jpeg")
    data = init_and_check(folder, tmp_path / "broken.yaml")
    assert data["data"]["bad_images"] == "skip"
    assert "1 unreadable file(s) left out: b/bad.jpg" in (tmp_path / "broken.yaml").read_text()


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grayscale_and_16_bit_folders_get_one_channel(tmp_path: Path, mode: str) -> None:
    folder = photos(tmp_path / "gray", {"a": 12, "b": 12}, mode=mode, size=(20, 20))
    data = init_and_check(folder, tmp_path / "gray.yaml")
    assert data["data"]["channels"] == 1 and data["data"]["resolution"] == 20
    assert ("intensity" in data["data"]) == (mode == "I;16")


def test_init_keeps_an_existing_config_and_names_a_missing_folder(tmp_path: Path) -> None:
    folder = photos(tmp_path / "p", {"a": 12, "b": 12})
    (tmp_path / "mine.yaml").write_text("# mine\n")
    r = invoke("init", str(folder), "-o", str(tmp_path / "mine.yaml"))
    assert r.exit_code == 2 and "exists" in r.stderr and "--force" in r.stderr
    assert (tmp_path / "mine.yaml").read_text() == "# mine\n"
    ok("init", str(folder), "-o", str(tmp_path / "mine.yaml"), "--force")
    r = invoke("init", str(tmp_path / "nowhere"), "-o", str(tmp_path / "n.yaml"))
    assert r.exit_code == 2 and "nowhere" in r.stderr and "does not exist" in r.stderr


def test_a_config_without_arms_or_with_one_seed_warns(tmp_path: Path) -> None:
    cfg = tmp_path / "bare.yaml"
    cfg.write_text(f"out_dir: {tmp_path}/run\ndata: {{source: digits}}\n")
    r = ok("run", "-c", str(cfg), "--dry-run")
    assert "has no arms: only the real-only baseline trains" in r.stderr
    r = ok("run", "-c", str(cfg), "--dry-run", "--set", "arms=[{name: real, data: real}, {name: aug, data: real, "
           "augment: classic}]")
    assert "no arms" not in r.stderr and "has one seed" in r.stderr
