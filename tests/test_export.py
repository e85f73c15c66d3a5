"""`ganaug export`: a synthetic set (or the training images) as an image folder or a zip, written atomically."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from ganaug.cli import export, main
from ganaug.config import Rep, load_config
from ganaug.data.synthetic import read_synthetic
from ganaug.errors import ConfigError
from ganaug.stages import export as export_stage
from ganaug.stages.split import load_split_data

from .conftest import CLASSES, make_folder, ok, tiny_config, write_yaml


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(r: Result) -> str:
    """The one `error: ` line of a command that stopped on bad input (exit status 2, no traceback)."""
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def snapshot(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def by_class(files: Dict[str, bytes]) -> Dict[str, torch.Tensor]:
    """'<class>/<index>.png' -> bytes as {class: uint8 (N, 1, H, W) in index order}; every file a PNG in a class folder."""
    out: Dict[str, List[np.ndarray]] = {}
    for name in sorted(files):
        cls, png = name.split("/")
        assert png.endswith(".png"), name
        out.setdefault(cls, []).append(np.array(Image.open(io.BytesIO(files[name]))))
    return {cls: torch.from_numpy(np.stack(arrs)).unsqueeze(1) for cls, arrs in out.items()}


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run with a split, a GAN (one epoch) and a synthetic set of 10 fakes per class; its config file."""
    tmp = tmp_path_factory.mktemp("export")
    folder = make_folder(tmp / "images")
    config = write_yaml(tmp / "tiny.yaml", tiny_config(tmp, folder, gan={"epochs": 1}))
    for command in ("split", "train-gan", "sample"):
        ok(command, "-c", str(config))
    return config


def fakes(config: Path) -> Dict[str, torch.Tensor]:
    images, labels, meta = read_synthetic(config.parent / "run" / "samples")
    assert meta["classes"] == list(CLASSES)
    return {cls: images[labels == c] for c, cls in enumerate(CLASSES)}


def test_fakes_as_an_image_folder_and_a_zip_hold_exactly_the_synthetic_set(sampled: Path, tmp_path: Path) -> None:
    want = fakes(sampled)
    r = ok("export", "-c", str(sampled), "--what", "fakes", "--format", "imagefolder")
    folder = Path(r.stdout.strip())
    assert folder == sampled.parent / "run" / "export" / "fakes"
    assert "30 fakes (10 per class, 3 classes) of 1x16x16" in r.stderr
    tree = snapshot(folder)
    assert sorted(tree)[:2] == ["bars/00000.png", "bars/00001.png"]
    got = by_class(tree)
    assert list(got) == list(CLASSES)  # a folder per class name, nothing else
    for cls in CLASSES:
        assert torch.equal(got[cls], want[cls]), cls  # pixel for pixel, in the set's order

    out = tmp_path / "deeper" / "fakes.zip"
    r = ok("export", "-c", str(sampled), "--what", "fakes", "--format", "zip", "-o", str(out))
    assert Path(r.stdout.strip()) == out
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        files = {name: zf.read(name) for name in zf.namelist()}
    assert sorted(files) == sorted(tree)  # the same tree inside the zip
    got = by_class(files)
    for cls in CLASSES:
        assert torch.equal(got[cls], want[cls]), cls
    assert [p.name for p in out.parent.iterdir()] == ["fakes.zip"]  # no temporary file left beside it


def test_the_training_images_as_an_image_folder(sampled: Path, tmp_path: Path) -> None:
    out = tmp_path / "train"
    ok("export", "-c", str(sampled), "--what", "train", "--format", "imagefolder", "-o", str(out))
    data, _ = load_split_data(load_config(sampled))
    got = by_class(snapshot(out))
    assert list(got) == list(data.classes) == list(CLASSES)
    for c, cls in enumerate(CLASSES):
        assert torch.equal(got[cls], data.train.images[data.train.labels == c]), cls
    assert sum(len(v) for v in got.values()) == 12  # the training images only (4 per class)


def test_an_existing_output_is_refused_unless_force(sampled: Path, tmp_path: Path) -> None:
    out = tmp_path / "fakes"
    c = ("-c", str(sampled), "--what", "fakes", "--format", "imagefolder", "-o", str(out))
    ok("export", *c)
    (out / "bars" / "00000.png").write_bytes(b"edited")
    before = snapshot(out)
    line = one_line_error(run("export", *c))
    assert f"'{out}' already exists; give --force to replace it" in line
    assert snapshot(out) == before
    ok("export", *c, "--force")
    assert torch.equal(by_class(snapshot(out))["bars"], fakes(sampled)["bars"])  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakes"]

    zipped = tmp_path / "fakes.zip"
    zipped.write_bytes(b"not a zip yet")
    assert "already exists" in one_line_error(run("export", "-c", str(sampled), "--what", "fakes", "--format", "zip",
                                                  "-o", str(zipped)))
    assert zipped.read_bytes() == b"not a zip yet"
    samples = sampled.parent / "run" / "samples"
    line = one_line_error(run("export", *c[:-1], str(samples), "--force"))  # never over the run folder's own
    assert "would replace the run folder or part of it" in line and (samples / "samples.pt").is_file()


def test_missing_samples_name_the_command_to_run_first(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, make_folder(tmp_path / "images")))
    ok("split", "-c", str(config))
    line = one_line_error(run("export", "-c", str(config), "--what", "fakes", "--format", "zip"))
    assert f"run `ganaug sample -c {config}` first" in line and "..." not in line
    assert not (tmp_path / "run" / "export").exists()


def test_bad_options_are_one_line(sampled: Path) -> None:
    c = ("export", "-c", str(sampled), "--format", "imagefolder")
    assert "give them with --what fakes" in one_line_error(run(*c, "--gan-seed", "1"))
    assert "the config trains gan seed 0" in one_line_error(run(*c, "--what", "fakes", "--gan-seed", "7"))
    assert "leave --generator out" in one_line_error(run(*c, "--what", "fakes", "--generator", "big"))
    assert run(*c, "--what", "everything").exit_code == 2  # Click's own usage error
    assert not (sampled.parent / "run" / "export" / "train").exists()


def test_which_generator_and_gan_seed_and_where(tmp_path: Path, image_folder: Path) -> None:
    raw = tiny_config(tmp_path, image_folder, arms=[{"name": "real", "data": "real"}], seeds=[0, 1, 2], gan_seeds=[3, 5])
    gan = raw.pop("gan")
    raw["generators"] = {"cg": gan, "cg2": gan}
    cfg = load_config(write_yaml(tmp_path / "two.yaml", raw))
    with pytest.raises(ConfigError, match=r"has 2 generators \(cg, cg2\); pick the one whose fakes .* --generator NAME"):
        export_stage._rep(cfg, None, None)
    with pytest.raises(ConfigError, match=r"--generator big: no such generator under generators: \(cg, cg2\)"):
        export_stage._rep(cfg, "big", None)
    with pytest.raises(ConfigError, match=r"--gan-seed 4: the config trains gan seeds 3, 5; pick one"):
        export_stage._rep(cfg, "cg", 4)
    assert export_stage._rep(cfg, "cg2", None) == Rep("cg2", 3)  # the first replicate
    rep = export_stage._rep(cfg, "cg2", 5)
    assert rep == Rep("cg2", 5)
    root = tmp_path / "run" / "export"
    assert export_stage.default_output(cfg, "imagefolder", rep) == root / "fakes-cg2-seed-5"
    assert export_stage.default_output(cfg, "zip", rep) == root / "fakes-cg2-seed-5.zip"
    assert export_stage.default_output(cfg, "stylegan2-ada", rep) == root / "fakes-cg2-seed-5-stylegan2-ada.zip"
    assert export_stage.default_output(cfg, "stylegan2-ada", None) == root / "stylegan2-ada.zip"  # as before
    assert export_stage.default_output(cfg, "zip", None) == root / "train.zip"


def test_an_interrupted_export_leaves_nothing_half_written(sampled: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pngs = export_stage._pngs

    def interrupted(*args, **kwargs):
        for i, item in enumerate(pngs(*args, **kwargs)):
            if i == 4:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(export_stage, "_pngs", interrupted)
    cfg = load_config(sampled)
    for fmt in ("imagefolder", "zip"):
        out = tmp_path / fmt
        with pytest.raises(KeyboardInterrupt):
            export_stage.run_export(cfg, fmt, out, what="fakes")
        assert not list(tmp_path.iterdir()), fmt  # no output, no temporary file or folder
    out = tmp_path / "kept"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        export_stage.run_export(cfg, "imagefolder", out, what="fakes", force=True)
    assert snapshot(out) == {"mine.txt": b"mine"} and sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_the_cli_offers_every_export_format() -> None:
    options = {p.name: p for p in export.params}
    assert tuple(options["fmt"].type.choices) == export_stage.EXPORT_FORMATS
    assert tuple(options["what"].type.choices) == export_stage.EXPORT_WHAT
