"""Each audit check fails when its fault happens where it would happen: a loader that hands the GAN, the domain
extractor or model selection the wrong images, the real stages training on them, and `compare` reading only what
the stages recorded. No record is edited on disk here; a clean run (duplicate pixels across parts included)
passes every check."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import torch

from ganaug.config import Config, load_config
from ganaug.data.images import image_hashes
from ganaug.data.split import HeldOut, Part, SplitData
from ganaug.stages import features as features_stage
from ganaug.stages import run_compare, run_split
from ganaug.stages import train_clf as clf_stage
from ganaug.stages import train_gan as gan_stage
from ganaug.stages.features import domain_checkpoint

from .conftest import audited, make_folder, tiny_config, write_yaml

GAN_CHECK = "the GAN saw only training images"
ARMS = [{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"}]


def _config(tmp_path: Path, folder: Path) -> Path:
    return write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, folder, arms=ARMS, gan={"epochs": 1}))


@pytest.fixture
def config(tmp_path: Path, image_folder: Path) -> Path:
    return _config(tmp_path, image_folder)


@pytest.fixture
def twins_config(tmp_path: Path) -> Path:
    """Data whose every 'bars' image is in the source twice (distinct files, identical pixels), as MNIST holds a few:
    the split puts many twins of training images into validation and test."""
    folder = make_folder(tmp_path / "images")
    for f in sorted((folder / "bars").glob("*.png")):
        shutil.copyfile(f, f.with_name("twin-" + f.name))
    return _config(tmp_path, folder)


def _split_data(data: SplitData, train: Part) -> SplitData:
    return SplitData(classes=data.classes, train=train, val=data.val, test=data.test, fingerprint=data.fingerprint)


def _patched_loader(real: Callable[[Config], Any], edit: Callable[[SplitData], SplitData]) -> Callable[[Config], Any]:
    """A `load_split_data` that hands its stage the split as `edit` changes it (as a buggy loader would)."""
    def load(cfg: Config) -> Any:
        data, manifest = real(cfg)
        return edit(data), manifest
    return load


def _test_as_train(data: SplitData) -> SplitData:
    """The whole test part handed over as the training images."""
    return _split_data(data, Part(images=data.test.images.clone(), labels=data.test.labels.clone()))


def _swap_in(k: int, part: str) -> Callable[[SplitData], SplitData]:
    """The first `k` training images replaced by the first `k` images of `part` (labels too)."""
    def edit(data: SplitData) -> SplitData:
        images, labels = data.train.images.clone(), data.train.labels.clone()
        src = getattr(data, part)
        images[:k], labels[:k] = src.images[:k], src.labels[:k]
        return _split_data(data, Part(images=images, labels=labels))
    return edit


def _manifest(cfg_file: Path) -> Dict[str, Any]:
    return json.loads((Path(load_config(cfg_file).out_dir) / "split" / "manifest.json").read_text())


# ----------------------------------------------------------------------------------------------------
# The GAN: what it trained on is hashed where training starts, and compared with the manifest's parts.


def test_a_gan_handed_the_test_images_is_a_violation(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gan_stage, "load_split_data", _patched_loader(gan_stage.load_split_data, _test_as_train))
    checks = audited(config, gan_cli=True)
    check = checks[GAN_CHECK]
    n_test = len(_manifest(config)["test"]["hashes"])
    assert check["status"] == "violation", check
    assert f"trained on {n_test} validation/test image(s) ({n_test} test)" in check["detail"], check


@pytest.mark.parametrize("part, name", [("test", "test"), ("val", "validation")])
def test_a_gan_handed_a_few_held_out_images_is_a_violation(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                          part: str, name: str) -> None:
    monkeypatch.setattr(gan_stage, "load_split_data", _patched_loader(gan_stage.load_split_data, _swap_in(2, part)))
    check = audited(config)[GAN_CHECK]
    assert check["status"] == "violation", check
    assert f"trained on 2 validation/test image(s) (2 {name})" in check["detail"], check
    assert "never saw 2 of the" in check["detail"], check  # the two training images they replaced


def test_a_gan_handed_images_outside_the_split_is_a_violation(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def noisy(data: SplitData) -> SplitData:
        images = data.train.images.clone()
        images[0] = torch.randint(0, 256, images[0].shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return _split_data(data, Part(images=images, labels=data.train.labels))

    monkeypatch.setattr(gan_stage, "load_split_data", _patched_loader(gan_stage.load_split_data, noisy))
    check = audited(config)[GAN_CHECK]
    assert check["status"] == "violation" and "1 image(s) not in the split" in check["detail"], check


def test_a_held_out_twin_of_a_training_image_is_caught_by_counting(twins_config: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A test image with the pixels of a training image, handed over in place of another training image: every
    hash the GAN saw is a training image's, but one of them once too often."""
    run_split(load_config(twins_config))
    manifest = _manifest(twins_config)
    train_h = manifest["train"]["hashes"]
    twin = next(i for i, h in enumerate(manifest["test"]["hashes"]) if h in train_h)
    slot = next(i for i, h in enumerate(train_h) if h != manifest["test"]["hashes"][twin])

    def edit(data: SplitData) -> SplitData:
        images = data.train.images.clone()
        images[slot] = data.test.images[twin]
        return _split_data(data, Part(images=images, labels=data.train.labels))

    monkeypatch.setattr(gan_stage, "load_split_data", _patched_loader(gan_stage.load_split_data, edit))
    check = audited(twins_config)[GAN_CHECK]
    assert check["status"] == "violation", check
    assert "1 more copy" in check["detail"] and "never saw 1 of the" in check["detail"], check


# ----------------------------------------------------------------------------------------------------
# The domain feature extractor: the same evidence, hashed in its training loop.


@pytest.mark.parametrize("edit, words", [(_test_as_train, "validation/test image(s) ("),
                                         (_swap_in(1, "val"), "trained on 1 validation/test image(s) (1 validation)")])
def test_a_domain_extractor_handed_held_out_images_is_a_violation(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  edit: Any, words: str) -> None:
    cfg = load_config(config)
    run_split(cfg)
    with monkeypatch.context() as m:
        m.setattr(features_stage, "load_split_data", _patched_loader(features_stage.load_split_data, edit))
        domain_checkpoint(cfg)
    check = audited(config)[GAN_CHECK]
    assert check["status"] == "violation", check
    assert "the domain feature extractor" in check["detail"] and words in check["detail"], check
    assert "the GAN in" not in check["detail"], check  # the GAN itself trained on the training images


# ----------------------------------------------------------------------------------------------------
# Model selection: what was scored is hashed from the tensor scored. (Today's code already caught a foreign
# validation image; these tests keep the proof, and ask that the audit say where the image came from.)


@pytest.mark.parametrize("part, words", [("train", "1 training image"), ("test", "1 test image")])
def test_a_validation_set_holding_another_parts_image_is_a_violation(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     part: str, words: str) -> None:
    def edit(data: SplitData) -> SplitData:
        images = data.val.images.clone()
        src = data.test.images if part == "test" else data.train.images
        images[0] = src[0]
        return SplitData(classes=data.classes, train=data.train, val=Part(images=images, labels=data.val.labels),
                         test=HeldOut(data.test.images, data.test.labels), fingerprint=data.fingerprint)

    monkeypatch.setattr(clf_stage, "load_split_data", _patched_loader(clf_stage.load_split_data, edit))
    checks = audited(config)
    synthetic = checks["no synthetic image in validation or test"]
    assert synthetic["status"] == "violation", synthetic
    assert "real seed 0 validated on 1 image(s) that are not the split's validation images" in synthetic["detail"]
    assert words in synthetic["detail"], synthetic
    if part == "test":
        selection = checks["model selection never used the test set"]
        assert selection["status"] == "violation" and "selected its weights on 1 test image(s)" in selection["detail"]


# ----------------------------------------------------------------------------------------------------
# No false alarm, and old run folders stay auditable.


def test_a_clean_run_passes_every_check(config: Path) -> None:
    cfg = load_config(config)
    run_split(cfg)
    domain_checkpoint(cfg)
    checks = audited(config)
    assert {name: c["status"] for name, c in checks.items()} == {name: "ok" for name in checks}, checks
    n = len(_manifest(config)["train"]["hashes"])
    assert f"content hashes of the {n} images handed to training" in checks[GAN_CHECK]["detail"]
    assert "domain feature extractor" in checks[GAN_CHECK]["detail"]
    seen = json.loads((Path(cfg.out_dir) / "gan" / "trained_on.json").read_text())
    assert Counter(seen["hashes"]) == Counter(_manifest(config)["train"]["hashes"])


def test_a_clean_run_on_data_with_twins_across_parts_has_no_violation(twins_config: Path) -> None:
    cfg = load_config(twins_config)
    run_split(cfg)
    domain_checkpoint(cfg)
    checks = audited(twins_config)
    manifest = _manifest(twins_config)
    assert set(manifest["train"]["hashes"]) & set(manifest["test"]["hashes"] + manifest["val"]["hashes"])  # twins exist
    assert checks["split: train, validation and test are disjoint"]["status"] == "note"
    assert {name: c["status"] for name, c in checks.items() if not name.startswith("split")} == \
        {name: "ok" for name in checks if not name.startswith("split")}, checks


def test_an_old_record_is_checked_by_its_hashes_and_one_without_them_is_unverified(config: Path) -> None:
    """trained_on.json as ganaug wrote it before it hashed the images where training starts: its hashes (of the
    tensor the stage handed to training) are still checked; without hashes it cannot be."""
    checks = audited(config)
    cfg = load_config(config)
    manifest = _manifest(config)
    record = Path(cfg.out_dir) / "gan" / "trained_on.json"
    assert checks[GAN_CHECK]["status"] == "ok"

    def audit_with(old: Dict[str, Any]) -> Dict[str, str]:
        record.write_text(json.dumps(old))
        run_compare(cfg)
        table = json.loads((Path(cfg.out_dir) / "compare" / "table.json").read_text())
        return next(c for c in table["audit"] if c["check"] == GAN_CHECK)

    old = {"n": len(manifest["train"]["indices"]), "indices": manifest["train"]["indices"],
           "hashes": manifest["train"]["hashes"]}
    check = audit_with(old)
    assert check["status"] == "ok" and "older ganaug" in check["detail"], check
    check = audit_with({**old, "hashes": manifest["test"]["hashes"][:len(old["hashes"])]})
    assert check["status"] == "violation" and "test" in check["detail"], check
    check = audit_with({k: v for k, v in old.items() if k != "hashes"})
    assert check["status"] == "unverified" and "retrain to record it" in check["detail"], check


# ----------------------------------------------------------------------------------------------------
# The official path hashes what its dataset zip holds.


@pytest.mark.parametrize("side", [16, 12])  # 12 is written upscaled to 16
def test_the_official_dataset_zip_is_hashed_as_written(tmp_path: Path, side: int) -> None:
    from ganaug.gans.official import write_dataset_zip
    from ganaug.stages.official import zip_hashes

    images = torch.randint(0, 256, (5, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1])
    data_zip = write_dataset_zip(images, labels, tmp_path / "dataset.zip")
    assert zip_hashes(data_zip, images) == image_hashes(images)
    other = images.clone()
    other[2] = 255 - other[2]  # the zip does not hold this image: its hash is the zip's, in no part of the split
    got = zip_hashes(data_zip, other)
    assert got[:2] == image_hashes(other)[:2] and got[2] not in image_hashes(other)
