"""Guided edits (`sample.mode: edit`) through the real stages: each fake starts from a training image, records which
(the hash of the very tensor edited), its strength and its classes; across classes it carries a soft label; a
GAN refuses; generators that differ only in how they sample train once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch

from ganaug.config import load_config
from ganaug.data.images import image_hashes
from ganaug.data.synthetic import read_soft_labels, read_synthetic
from ganaug.stages import run_sample, run_split, run_train_gan
from ganaug.stages.cells import build_graph
from ganaug.stages.layout import paths
from ganaug.stages.split import load_split_data

from .conftest import audited, invoke, tiny_config, write_yaml

VAE = {"name": "vae", "epochs": 2, "batch_size": 8, "z_dim": 4, "width": 4}
DIFFUSION = {"name": "diffusion", "preset": "tiny", "kimg": 0.02, "batch_size": 8, "timesteps": 50}
ARMS = [{"name": "real", "data": "real"}, {"name": "mixed", "data": "mixed", "mix": {"p_real": 0.5}}]


def _config(tmp_path: Path, folder: Path, gan: Dict[str, Any], **sample: Any) -> Path:
    data = tiny_config(tmp_path, folder, arms=ARMS, evaluate={"enabled": False},
                       sample={"n_per_class": 6, "mode": "edit", **sample})
    data["gan"] = gan
    return write_yaml(tmp_path / "cfg.yaml", data)


def _sampled(cfg_file: Path):
    cfg = load_config(cfg_file)
    run_split(cfg)
    run_train_gan(cfg, progress=False)
    folder = run_sample(cfg)[0]
    images, labels, meta = read_synthetic(folder)
    edits = dict(np.load(folder / "edits.npz"))
    data, _ = load_split_data(cfg)
    return cfg, folder, images, labels, meta, edits, data


@pytest.mark.parametrize("gan", [VAE, DIFFUSION], ids=["vae", "diffusion"])
def test_an_edit_records_the_training_image_it_edited(tmp_path: Path, image_folder: Path, gan: Dict[str, Any]) -> None:
    cfg, folder, images, labels, meta, edits, data = _sampled(_config(tmp_path, image_folder, gan, strength=[0.0, 0.6],
                                                                      steps=2) if gan is DIFFUSION
                                                              else _config(tmp_path, image_folder, gan, strength=[0.0, 0.6]))
    n = len(images)
    assert n == 6 * len(data.classes) and meta["edits"] == "edits.npz" and (folder / "edits.png").is_file()
    src = data.train.images[torch.from_numpy(edits["source_index"])]
    assert list(edits["source_hash"]) == image_hashes(src)  # the recorded hash is the image at the recorded index
    assert (edits["source_label"] == data.train.labels[edits["source_index"]].numpy()).all()
    assert (labels.numpy() == edits["source_label"]).all()  # within class: the source's label
    zero = edits["strength"] == 0.0
    assert 0 < zero.sum() < n
    if gan is DIFFUSION:  # strength 0: the source itself (no step of the sampler)
        assert torch.equal(images[torch.from_numpy(zero)], src[torch.from_numpy(zero)])
    # every training image of a class is a source before any is one twice (6 fakes, 4 images per class)
    for c in range(len(data.classes)):
        used = edits["source_index"][edits["source_label"] == c]
        assert len(set(used[:4].tolist())) == 4


def test_across_classes_the_soft_label_is_the_strength_s_share(tmp_path: Path, image_folder: Path) -> None:
    cfg, folder, images, labels, meta, edits, data = _sampled(
        _config(tmp_path, image_folder, VAE, strength=[0.25, 0.75], target="other", per_image=2))
    soft = read_soft_labels(folder)
    assert soft is not None and len(soft) == len(images) == 2 * len(data.train.labels)
    assert torch.allclose(soft.sum(1), torch.ones(len(soft)))
    a, b, s = (torch.from_numpy(edits[k]) for k in ("source_label", "target_label", "strength"))
    assert (a != b).all()
    rows = torch.arange(len(soft))
    assert torch.allclose(soft[rows, b], s) and torch.allclose(soft[rows, a], 1 - s)
    assert torch.equal(labels, torch.where(s >= 0.5, b, a))  # the hard label: the larger share
    for c in range(len(data.classes)):  # the targets of a class's edits spread evenly over the other classes
        counts = torch.bincount(b[a == c], minlength=len(data.classes))
        others = counts[torch.arange(len(data.classes)) != c]
        assert int(others.max() - others.min()) <= 1
    # each class receives as many edits as it sends, so the hard labels stay balanced (mix.add finds its K per class)
    assert torch.equal(torch.bincount(b, minlength=len(data.classes)), torch.bincount(a, minlength=len(data.classes)))


def test_generators_that_differ_only_in_sampling_train_once(tmp_path: Path, image_folder: Path) -> None:
    data = tiny_config(tmp_path, image_folder, evaluate={"enabled": False}, gan=None,
                       generators={"noise": VAE, "edits": {**VAE, "sample": {"mode": "edit", "strength": 0.5}}},
                       arms=[{"name": "real", "data": "real"},
                             {"name": "noise", "data": "mixed", "mix": {"add": 5}, "generator": "noise"},
                             {"name": "edits", "data": "mixed", "mix": {"add": 5}, "generator": "edits"}])
    del data["gan"]
    cfg = load_config(write_yaml(tmp_path / "cfg.yaml", data))
    assert cfg.trained_as("edits") == "noise" and paths(cfg).gan(cfg.replicates[1]) == paths(cfg).gan(cfg.replicates[0])
    kinds = [c.kind for c in build_graph(cfg)]
    assert kinds.count("train-gan") == 1 and kinds.count("sample") == 2
    run_split(cfg)
    assert len(run_train_gan(cfg, progress=False, force=True)) == 1  # --force too retrains it once, not per twin
    noise, edits = run_sample(cfg)
    assert not (noise / "edits.npz").exists() and (edits / "edits.npz").exists()


@pytest.mark.parametrize("sample, key", [
    ({"mode": "edit"}, "sample.mode"),  # a GAN cannot start from an image
    ({"strength": 0.5}, "sample.strength"),  # an edit key without edit mode
])
def test_edit_mode_on_a_gan_and_edit_keys_without_it_are_one_line_errors(tmp_path: Path, image_folder: Path,
                                                                        sample: Dict[str, Any], key: str) -> None:
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, image_folder, sample=sample))
    r = invoke("sample", "--config", str(cfg))
    assert r.exit_code == 2 and f"config key '{key}'" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "run").exists()


def test_yaml_off_is_the_word_off(tmp_path: Path, image_folder: Path) -> None:
    """YAML reads an unquoted off as false: amp: off and channels_last: off still mean "off"."""
    text = write_yaml(tmp_path / "cfg.yaml", tiny_config(tmp_path, image_folder)).read_text()
    text = text.replace("classifier:\n", "classifier:\n  amp: off\n  channels_last: off\n")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(text)
    cfg = load_config(cfg_file)
    assert cfg.classifier.amp == "off" and cfg.classifier.channels_last == "off"


# ----------------------------------------------------------------------------------------------------
# The audit and the copy check, on the real stages.

EDIT_CHECK = "edits started from training images"


def test_an_editor_handed_the_test_images_fails_the_audit(tmp_path: Path, image_folder: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader that hands the sample stage the test images as its training images: every edit starts from a test
    image, and the audit says so (the GAN, trained by its own stage on the real training images, is not at fault)."""
    from ganaug.data.split import Part, SplitData
    from ganaug.stages import sample as sample_stage

    real = sample_stage.load_split_data

    def leaky(cfg: Any) -> Any:
        data, manifest = real(cfg)
        test = Part(images=data.test.images.clone(), labels=data.test.labels.clone())
        return SplitData(classes=data.classes, train=test, val=data.val, test=data.test,
                         fingerprint=data.fingerprint), manifest

    cfg_file = _config(tmp_path, image_folder, VAE, strength=0.5)
    monkeypatch.setattr(sample_stage, "load_split_data", leaky)
    check = audited(cfg_file)[EDIT_CHECK]
    assert check["status"] == "violation", check
    assert "started from images that are not training images" in check["detail"] and "test image" in check["detail"]


def test_a_clean_edit_run_passes_the_audit(tmp_path: Path, image_folder: Path) -> None:
    checks = audited(_config(tmp_path, image_folder, VAE, strength=0.5))
    assert checks[EDIT_CHECK]["status"] == "ok", checks[EDIT_CHECK]
    assert all(c["status"] in ("ok", "note") for c in checks.values()), checks


def test_the_copy_check_leaves_each_edit_s_own_source_out(tmp_path: Path, image_folder: Path) -> None:
    """Edits at strength 0 are their sources, verbatim: with the source left out they are judged against the other
    training images and are not copies; the distance to their source is reported (0) per strength."""
    import json

    from ganaug.stages.evaluate import run_evaluate

    data = tiny_config(tmp_path, image_folder, arms=ARMS, sample={"n_per_class": 12, "mode": "edit", "strength": 0.0},
                       split={"n_per_class": 8, "val_per_class": 3})
    data["gan"] = {**DIFFUSION, "kimg": 0.02}
    cfg = load_config(write_yaml(tmp_path / "cfg.yaml", data))
    run_split(cfg)
    run_train_gan(cfg, progress=False)
    run_sample(cfg)
    run_evaluate(cfg)
    q = json.loads((paths(cfg).evaluate() / "quality.json").read_text())["copies"]
    assert q["own_source_excluded"] and q["to_source"]["0"]["median"] == 0.0
    assert q["to_source"]["0"]["within_threshold"] == 1.0
    assert q["pixels"]["overall"]["share"] < 0.5, q["pixels"]["overall"]  # judged against the other images
    assert not q["flag"], q["fired"]


def test_nearest_two_leaves_out_only_the_excluded_reference() -> None:
    """A query that copies reference 3 and is told to leave 3 out finds its next nearest; a query that copies
    reference 5 while leaving out 3 is still a copy of 5 (memorisation of another training image is caught)."""
    from ganaug.metrics.copies import nearest_two

    refs = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    query = torch.stack([refs[3], refs[5]])
    near = nearest_two(query, lambda t: refs, 1, exclude=torch.tensor([3, 3]))
    assert near.index[0] != 3 and near.d1[0] > 0
    assert near.index[1] == 5 and near.d1[1] == 0
    plain = nearest_two(query, lambda t: refs, 1)
    assert plain.index.tolist() == [3, 5] and plain.d1.tolist() == [0.0, 0.0]


def test_across_classes_every_class_receives_as_many_edits_as_it_sends() -> None:
    """500 edits per class over 10 classes (500 is not a multiple of the 9 other classes): the targets still give each
    class exactly 500, so an arm that adds 500 fakes per class finds them."""
    from types import SimpleNamespace

    from ganaug.stages.sample import edit_plan

    labels = torch.arange(10).repeat_interleave(100)
    s = SimpleNamespace(target="other", strengths=[0.75])
    plan = edit_plan(labels, [500] * 10, s, 10, torch.Generator().manual_seed(1))
    assert torch.bincount(plan["target_label"], minlength=10).tolist() == [500] * 10
    assert torch.bincount(plan["label"], minlength=10).tolist() == [500] * 10
    assert (plan["target_label"] != plan["source_label"]).all()


def test_generators_that_differ_only_in_sampling_are_benchmarked_once(tmp_path: Path, image_folder: Path) -> None:
    """The plan's estimate times a generator's training once per machine: twins (one training) share that timing,
    instead of each paying for a benchmark of its own (nine diffusion twins took minutes before a run began)."""
    from ganaug.executors.benchmark import Benchmark
    from ganaug.executors.makespan import Shape
    from ganaug.executors.workload import Sizes

    data = tiny_config(tmp_path, image_folder, evaluate={"enabled": False},
                       generators={"noise": VAE, "edits": {**VAE, "sample": {"mode": "edit", "strength": 0.5}}},
                       arms=[{"name": "real", "data": "real"},
                             {"name": "edits", "data": "mixed", "mix": {"add": 5}, "generator": "edits"}])
    del data["gan"]
    cfg = load_config(write_yaml(tmp_path / "cfg.yaml", data))
    bench = Benchmark(cfg, Shape("serial", 2, 1, 1, 1))
    sizes = Sizes((3, 16, 16), 3, 12, 9, 20, True)
    assert bench.gan(cfg, "noise", sizes) == bench.gan(cfg, "edits", sizes)
