"""Tiny generated data and configs: 3 classes of 16x16 images a classifier can tell apart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from ganaug.cli import main

CLASSES = ("bars", "columns", "diagonal")

# float32 for amp: auto on every CPU (bfloat16 where the CPU has it otherwise): the tests' numbers are the same on
# every host. Set before any cell runs, so spawned workers inherit it; the bf16 path has tests of its own.
os.environ.setdefault("GANAUG_CPU_BF16", "0")


def pattern(cls: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy image whose structure gives away its class."""
    img = rng.integers(0, 60, (size, size)).astype(np.uint8)
    k = int(rng.integers(2, size - 2))
    if cls == 0:
        img[k - 1:k + 1, :] = 230
    elif cls == 1:
        img[:, k - 1:k + 1] = 230
    else:
        np.fill_diagonal(img, 230)
        np.fill_diagonal(img[:, 1:], 230)
    return img


def make_folder(root: Path, per_class: int = 14, rgb: bool = False, size: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = pattern(c, rng, size)
            img = Image.fromarray(np.stack([arr, arr // 2, 255 - arr], -1) if rgb else arr)
            img.save(root / name / f"img{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


def tiny_config(tmp_path: Path, folder: Path, **sections: Any) -> Dict[str, Any]:
    cfg: Dict[str, Any] = {
        "name": "tiny",
        "out_dir": str(tmp_path / "run"),
        "device": "cpu",
        "data": {"source": "imagefolder", "root": str(folder), "resolution": 16},
        "split": {"n_per_class": 4, "val_per_class": 3, "seed": 0},
        "gan": {"name": "cgan", "epochs": 2, "batch_size": 8, "z_dim": 8, "width": 8, "grid_every": 1},
        "sample": {"n_per_class": 10, "batch_size": 16, "grid_per_class": 2},
        "classifier": {"name": "small-cnn", "steps": 6, "batch_size": 8, "width": 4, "eval_every": 3},
        "evaluate": {"domain": {"steps": 20, "width": 4}, "kid_subsets": 5},
        "arms": [
            {"name": "real", "data": "real"},
            {"name": "synthetic", "data": "synthetic"},
            {"name": "mixed-0.5", "data": "mixed", "mix": {"p_real": 0.5}},
            {"name": "real+5", "data": "mixed", "mix": {"add": 5}},
            {"name": "real-aug", "data": "real", "augment": "classic"},
        ],
        "seeds": [0],
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def write_yaml(path: Path, data: Dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def finished_run(tmp: Path, arms: Any) -> Path:
    """A finished tiny run with a GAN over three seeds and 40-step classifiers evaluated every 10 steps; its config."""
    from ganaug.config import load_config
    from ganaug.stages import run_all

    folder = make_folder(tmp / "images", per_class=24)
    data = tiny_config(tmp, folder, arms=arms, seeds=[0, 1, 2], gan={"epochs": 1},
                       split={"n_per_class": 6, "val_per_class": 4},
                       classifier={"steps": 40, "batch_size": 16, "width": 8, "lr": 0.005, "eval_every": 10})
    path = write_yaml(tmp / "cfg.yaml", data)
    run_all(load_config(path), progress=False)
    return path


@pytest.fixture
def config_file(tmp_path: Path, image_folder: Path) -> Path:
    return write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, image_folder))


def abort_at_exit(env: Dict[str, str]) -> Dict[str, str]:
    """`env` with tests/abort_at_exit on PYTHONPATH: every torchrun process but rank 0 then aborts in the
    interpreter's teardown, as gloo's threads now and then make one do."""
    path = [str(Path(__file__).with_name("abort_at_exit")), env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def invoke(*args: str) -> Result:
    """`ganaug ARGS` through Click's CliRunner (stderr kept apart in result.stderr)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(*args: str) -> Result:
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return r


def rewrite_synthetic(folder: Path, edit: Any, update_record: bool = False) -> None:
    """Rewrite a synthetic set on disk with `edit(images) -> images` applied (as a buggy or tampering writer would);
    with `update_record`, its stage.json hashes agree with the new files (as a buggy sampler would write them)."""
    import json

    import torch

    from ganaug.data.synthetic import OUTPUTS, read_synthetic, save_synthetic
    from ganaug.utils import file_sha256

    images, labels, meta = read_synthetic(folder)
    new = edit(images.clone())
    keep = {k: v for k, v in meta.items() if k not in ("format", "images", "labels", "n", "shape", "classes")}
    for name in OUTPUTS:
        (folder / name).unlink(missing_ok=True)
    save_synthetic(folder, new, torch.as_tensor(labels).clone(), meta["classes"], keep, png=False)
    if update_record:
        rec = json.loads((folder / "stage.json").read_text())
        rec["outputs"] = {name: file_sha256(folder / name) for name in OUTPUTS}
        (folder / "stage.json").write_text(json.dumps(rec))


def audited(cfg_file: Path, *, gan_cli: bool = False) -> Dict[str, Dict[str, str]]:
    """Split (if needed), train the GAN (in process, or through the CLI), sample, train the classifiers, compare:
    the audit's checks by name, as compare recorded them."""
    import json

    from ganaug.config import load_config
    from ganaug.stages import run_compare, run_sample, run_split, run_train_clf, run_train_gan

    cfg = load_config(cfg_file)
    run_split(cfg)
    if gan_cli:
        ok("train-gan", "--config", str(cfg_file))
    else:
        run_train_gan(cfg, progress=False)
    run_sample(cfg)
    run_train_clf(cfg, progress=False)
    run_compare(cfg)
    table = json.loads((Path(cfg.out_dir) / "compare" / "table.json").read_text())
    return {c["check"]: c for c in table["audit"]}
