"""Bad input through the CLI: exit status 2, one `error: ` line naming the culprit and the fix, nothing half-written.

Every failing command is run between two snapshots of its run folder (each path -> sha256 of its bytes), which
must be identical: a command that stops on bad input leaves no partial stage folder, lock or config behind.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from ganaug.cli import main
from ganaug.data.synthetic import TENSOR_FILE, load_synthetic
from ganaug.errors import DataError

from .conftest import make_folder, rewrite_synthetic, tiny_config, write_yaml


def snapshot(root: Path) -> Dict[str, str]:
    """Every path under `root` -> sha256 of its bytes ('<dir>' for a folder); {'.': 'absent'} when root is missing."""
    if not root.exists():
        return {".": "absent"}
    if not root.is_dir():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(main, list(args))


def fails_cleanly(run_dir: Path, args: Sequence[str], *words: str) -> str:
    """Run the command; assert exit 2, exactly one `error: ` line holding every word, and `run_dir` untouched."""
    before = snapshot(run_dir)
    r = invoke(args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert snapshot(run_dir) == before, "the failing command changed the run folder"
    return lines[0]


def setup(tmp_path: Path, **sections) -> Tuple[Path, Path, Path]:
    """(config file, run folder, image folder) of the tiny config with a one-epoch GAN."""
    folder = make_folder(tmp_path / "images")
    sections.setdefault("gan", {"epochs": 1})
    cfg = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, folder, **sections))
    return cfg, tmp_path / "run", folder


# ----------------------------------------------------------------------------------------------------
# 1-3: the config file and its overrides.


def test_01_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\nout_dir: {tmp_path / 'run'}\ngan:\n  epochs: [1, 2\n  z_dim: 3\n")
    fails_cleanly(tmp_path / "run", ["split", "-c", str(bad)],
                  "bad.yaml", "not valid YAML", "line 5, column 8", "fix the file")


@pytest.mark.parametrize("where", ["file", "--set"])
def test_02_unknown_key_suggests_a_close_match(tmp_path: Path, where: str) -> None:
    cfg, run, folder = setup(tmp_path)
    if where == "file":
        data = tiny_config(tmp_path, folder)
        data["classifier"]["stpes"] = 3
        bad = write_yaml(tmp_path / "typo.yaml", data)
        fails_cleanly(run, ["split", "-c", str(bad)],
                      "unknown config key 'classifier.stpes'", "typo.yaml", "did you mean 'classifier.steps'")
    else:
        fails_cleanly(run, ["split", "-c", str(cfg), "--set", "seed=3"],
                      "unknown config key 'seed'", "(from --set seed=3)", "did you mean 'seeds'")


@pytest.mark.parametrize("override, words", [
    # Wrong types.
    ("gan.epochs=many", ("'gan.epochs'", "must be an integer", "'many'")),
    ("seeds=abc", ("'seeds'", "must be a list", "'abc'")),
    ("seeds=[0, x]", ("'seeds[1]'", "must be an integer", "'x'")),
    ("split=5", ("'split'", "must be a mapping", "got 5")),
    ("arms.0.mix=half", ("'arms[0].mix'", "must be a mapping", "'half'")),
    # Out of range.
    ("gan.lr=-0.0002", ("'gan.lr'", "must be positive", "-0.0002")),
    ("classifier.lr=-1", ("'classifier.lr'", "must be positive", "-1")),
    ("arms.2.mix.p_real=1.5", ("'arms[2].mix.p_real'", "must be between 0 and 1", "1.5")),
    ("data.resolution=2", ("'data.resolution'", "must be between 4 and 1024", "got 2")),
    ("split.n_per_class=0", ("'split.n_per_class'", "must be 1 or more", "got 0")),
    ("sweep.values='0:1:0.000001'", ("'sweep.values'", "200 at most", "raise the step")),
], ids=lambda x: x if isinstance(x, str) else None)
def test_03_wrong_type_or_out_of_range(tmp_path: Path, override: str, words: Tuple[str, ...]) -> None:
    cfg, run, _ = setup(tmp_path)
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", override], *words)


def test_03_wrong_type_in_the_file_names_the_file(tmp_path: Path) -> None:
    data = tiny_config(tmp_path, tmp_path / "images")
    data["gan"]["epochs"] = "many"
    bad = write_yaml(tmp_path / "many.yaml", data)
    fails_cleanly(tmp_path / "run", ["split", "-c", str(bad)], "'gan.epochs' must be an integer", "many.yaml")


# ----------------------------------------------------------------------------------------------------
# 4-6, 9, 10: the data folder.


def test_04_missing_data_folder(tmp_path: Path) -> None:
    cfg, run, _ = setup(tmp_path)
    nowhere = tmp_path / "nowhere"
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", f"data.root={nowhere}"],
                  f"'{nowhere}'", "does not exist", "point data.root at")


def test_04_empty_data_folder(tmp_path: Path) -> None:
    cfg, run, _ = setup(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", f"data.root={empty}"],
                  f"'{empty}'", "has no class subfolders", "lay images out as")


def test_05_class_folder_with_only_a_text_file(tmp_path: Path) -> None:
    cfg, run, folder = setup(tmp_path)
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("no images here")
    fails_cleanly(run, ["split", "-c", str(cfg)], f"class folder '{folder / 'notes'}'", "has no images",
                  "add images or remove the folder")


def test_05_class_folder_with_only_corrupt_images(tmp_path: Path) -> None:
    cfg, run, folder = setup(tmp_path)
    (folder / "broken").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        (folder / "broken" / name).write_bytes(rng.bytes(120))
    # Stopping at the first unreadable file names it (inside the folder) ...
    fails_cleanly(run, ["split", "-c", str(cfg)], f"'{folder / 'broken' / 'a.png'}'", "bad_images: skip")
    # ... and skipping them leaves a class with nothing, which names the folder.
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", "data.bad_images=skip"],
                  f"class folder '{folder / 'broken'}'", "has no readable image", "add images or remove it")


@pytest.mark.parametrize("kind", ["random-bytes", "truncated"])
def test_06_corrupt_image_is_named(tmp_path: Path, kind: str) -> None:
    cfg, run, folder = setup(tmp_path)
    bad = folder / "columns" / "zz-bad.png"
    if kind == "random-bytes":
        bad.write_bytes(np.random.default_rng(1).bytes(300))
        reason = "cannot identify image file"
    else:
        good = (folder / "columns" / "img000.png").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
        reason = "truncated"
    fails_cleanly(run, ["split", "-c", str(cfg)], f"cannot read image '{bad}'", reason,
                  "replace or remove it", "bad_images: skip")


def test_07_mixed_modes_are_converted_and_said(tmp_path: Path) -> None:
    cfg, run, folder = setup(tmp_path)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(folder / "bars" / "rgb.png")
    Image.new("RGBA", (16, 16), (0, 10, 10, 100)).save(folder / "columns" / "rgba.png")
    Image.new("P", (16, 16)).save(folder / "diagonal" / "palette.png")
    r = invoke(["split", "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    assert ("split: note: images had mixed modes (L: 42, P: 1, RGB: 1, RGBA: 1); all converted to RGB"
            in r.stderr.splitlines())
    assert yaml.safe_load((run / "split" / "manifest.json").read_text())["shape"] == [3, 16, 16]


def test_09_n_per_class_larger_than_a_class(tmp_path: Path) -> None:
    cfg, run, _ = setup(tmp_path)
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", "split.n_per_class=20"],
                  "split.n_per_class", "class 'bars' has 14 images", "20 training + 3 validation",
                  "lower split.n_per_class")


def test_10_a_single_class_folder(tmp_path: Path) -> None:
    cfg, run, folder = setup(tmp_path)
    shutil.rmtree(folder / "bars")
    shutil.rmtree(folder / "columns")
    fails_cleanly(run, ["split", "-c", str(cfg)], f"'{folder}'", "one class folder ('diagonal')",
                  "needs at least two")


def test_10_a_label_regex_that_finds_one_label(tmp_path: Path) -> None:
    cfg, run, _ = setup(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        Image.new("L", (16, 16), i * 40).save(flat / f"{i}_a_x.png")
    fails_cleanly(run, ["split", "-c", str(cfg), "--set", f"data.root={flat}", "--set", r"data.label_regex=^\d+_(\w)_"],
                  "data.label_regex", "finds 1 label(s)", "(a)", "needs at least two")


# ----------------------------------------------------------------------------------------------------
# 8: a synthetic set that does not match the real images.


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    """(config file, run folder) after split, train-gan and sample on the tiny config."""
    tmp = tmp_path_factory.mktemp("sampled")
    cfg, run, _ = setup(tmp)
    for stage in ("split", "train-gan", "sample"):
        r = invoke([stage, "-c", str(cfg)])
        assert r.exit_code == 0, r.output
    return cfg, run


MISMATCHED = {"8x8": (1, 8, 8), "3-channel": (3, 16, 16)}


@pytest.mark.parametrize("kind", MISMATCHED)
def test_08_synthetic_set_of_another_shape(sampled_run: Tuple[Path, Path], tmp_path: Path, kind: str) -> None:
    """A set of another shape whose record agrees with it (as a sampler bug would write it): the shape check names it."""
    cfg_src, run_src = sampled_run
    run = tmp_path / "run"
    shutil.copytree(run_src, run)
    cfg = write_yaml(tmp_path / "tiny.yaml", {**yaml.safe_load(cfg_src.read_text()), "out_dir": str(run)})
    path = run / "samples" / TENSOR_FILE
    shape = MISMATCHED[kind]
    # Past the content check (the record agrees with the new files), to the shape check.
    rewrite_synthetic(run / "samples", lambda x: torch.randint(0, 256, (len(x), *shape), dtype=torch.uint8,
                                                               generator=torch.Generator().manual_seed(0)),
                      update_record=True)
    fails_cleanly(run, ["train-clf", "-c", str(cfg), "--data", "synthetic"], str(path), f"has images of {shape} (C, H, W)",
                  "the real ones are (1, 16, 16)", "sample from a GAN trained on this split")


@pytest.mark.parametrize("kind", MISMATCHED)
def test_08_load_synthetic_names_both_shapes(tmp_path: Path, kind: str) -> None:
    shape = MISMATCHED[kind]
    images = torch.randint(0, 256, (6, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.tensor([0, 1, 2, 0, 1, 2]), "classes": ["a", "b", "c"]},
               tmp_path / TENSOR_FILE)
    with pytest.raises(DataError) as e:
        load_synthetic(tmp_path, (1, 16, 16), ["a", "b", "c"])
    msg = str(e.value)
    assert str(tmp_path / TENSOR_FILE) in msg and f"has images of {shape} (C, H, W)" in msg
    assert "the real ones are (1, 16, 16)" in msg and "sample from a GAN trained on this split" in msg


# ----------------------------------------------------------------------------------------------------
# 11: an out_dir that is a file.


@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_11_out_dir_is_a_file(tmp_path: Path, under: bool) -> None:
    cfg, _, _ = setup(tmp_path)
    blocker = tmp_path / "run-is-a-file"
    blocker.write_text("not a folder\n")
    out_dir = blocker / "sub" if under else blocker
    line = fails_cleanly(tmp_path, ["split", "-c", str(cfg), "--set", f"out_dir={out_dir}"], f"'{out_dir}'")
    if under:
        assert "Not a directory" in line and "check the path" in line, line
    else:
        assert "is a file, not a folder" in line and "set out_dir to a folder" in line, line


def test_11_out_dir_with_a_nul_character(tmp_path: Path) -> None:
    _, run, folder = setup(tmp_path)
    data = tiny_config(tmp_path, folder)
    data["out_dir"] = f"{run}\x00x"
    cfg = write_yaml(tmp_path / "nul.yaml", data)
    fails_cleanly(tmp_path, ["split", "-c", str(cfg)], "config key 'out_dir'", "NUL character", "remove it")


@pytest.mark.parametrize("value", ["yes", "2"])
def test_12_a_cpu_bf16_override_that_is_neither_0_nor_1(tmp_path: Path, value: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """GANAUG_CPU_BF16 decides a run's precision and fingerprint: a value it does not take is said, not ignored."""
    cfg, run, _ = setup(tmp_path)
    assert invoke(["split", "-c", str(cfg)]).exit_code == 0
    monkeypatch.setenv("GANAUG_CPU_BF16", value)
    fails_cleanly(run, ["train-clf", "-c", str(cfg), "--data", "real"], "GANAUG_CPU_BF16", f"'{value}'", "0", "1", "unset")
