"""The copy check sees the copies a small-data generator makes (shifted, mirrored, a few per class), over every
training image, with a stated false-alarm rate; the floor, the fakes and the training row are scored at one size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

from ganaug.config import load_config
from ganaug.stages import run_all, run_compare

from .conftest import CLASSES, invoke, make_folder, pattern, rewrite_synthetic, tiny_config, write_yaml


def _config(tmp: Path, per_class: int = 120, **sections: Any) -> Dict[str, Any]:
    folder = make_folder(tmp / "images", per_class=per_class)
    return tiny_config(tmp, folder, **{
        "arms": [{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"}],
        "gan": {"epochs": 1}, "split": {"n_per_class": 12, "val_per_class": 4}, "sample": {"n_per_class": 100},
        "classifier": {"steps": 3, "batch_size": 8, "width": 4, "eval_every": 3},
        "evaluate": {"domain": {"steps": 20, "width": 4}, "kid_subsets": 5}, **sections})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("copies")
    path = write_yaml(tmp / "cfg.yaml", _config(tmp))
    run_all(load_config(path), progress=False)
    return path


def _with_fakes(finished: Path, tmp: Path, edit: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
                *overrides: str) -> Dict[str, Any]:
    """A copy of the finished run whose synthetic set is `edit(images, labels, train)` (its stage record's hashes
    updated, as a sampler that made them would write them), evaluated again."""
    from ganaug.data.synthetic import read_synthetic
    from ganaug.stages.split import load_split_data

    shutil.copytree(load_config(finished).out_dir, tmp / "run")
    cfg = load_config(finished, [f"out_dir={tmp / 'run'}", *overrides])
    data, _ = load_split_data(cfg)
    labels = torch.as_tensor(read_synthetic(tmp / "run" / "samples")[1])
    rewrite_synthetic(tmp / "run" / "samples", lambda images: edit(images, labels, data.train), update_record=True)
    sets = [a for o in overrides for a in ("--set", o)]
    r = invoke("evaluate", "-c", str(finished), "--set", f"out_dir={tmp / 'run'}", *sets, "--force")
    assert r.exit_code == 0, r.output
    return json.loads((tmp / "run" / "evaluate" / "quality.json").read_text())


def _copies_of_train(labels: torch.Tensor, train: Any, move: Callable[[torch.Tensor], torch.Tensor],
                     images: torch.Tensor, share: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Replace `share` of each class's fakes with training images of that class put through `move`."""
    g = torch.Generator().manual_seed(seed)
    for c in range(len(CLASSES)):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[:int(round(share * len(idx)))]]
        pool = train.images[train.labels == c]
        images[idx] = move(pool[torch.randint(len(pool), (len(idx),), generator=g)])
    return images


def _fresh(labels: torch.Tensor, seed: int = 99) -> torch.Tensor:
    """A generator that copies nothing: new images of each fake's class, drawn like the real ones."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([pattern(int(c), rng)[None] for c in labels]))


MOVES = {
    "shifted 1 px": lambda x: torch.roll(x, shifts=1, dims=-1),
    "shifted 2 px down, 1 right": lambda x: torch.roll(x, shifts=(2, 1), dims=(-2, -1)),
    "mirrored": lambda x: x.flip(-1),
}


@pytest.mark.parametrize("move", list(MOVES))
def test_shifted_and_mirrored_training_copies_are_flagged(finished: Path, tmp_path: Path, move: str) -> None:
    ok = json.loads((Path(load_config(finished).out_dir) / "evaluate" / "quality.json").read_text())
    assert not ok["copies"]["flag"], ok["copies"]["fired"]
    extra = ["evaluate.copy_mirror=true"] if move == "mirrored" else []
    q = _with_fakes(finished, tmp_path, lambda x, y, train: _copies_of_train(y, train, MOVES[move], x), *extra)
    assert q["copies"]["flag"], q["copies"]
    assert q["copies"]["pixels"]["overall"]["share"] > 0.9
    assert sorted(q["copies"]["pixels"]["flagged_classes"]) == sorted(CLASSES)
    md = run_compare(load_config(finished, [f"out_dir={tmp_path / 'run'}", *extra]))
    assert "COPIES?" in md


def test_a_few_verbatim_copies_per_class_are_flagged_and_a_generator_that_copies_nothing_is_not(
        finished: Path, tmp_path: Path) -> None:
    clean = _with_fakes(finished, tmp_path / "a", lambda x, y, train: _fresh(y))
    assert not clean["copies"]["flag"], clean["copies"]["fired"]
    few = _with_fakes(finished, tmp_path / "b",
                      lambda x, y, train: _copies_of_train(y, train, lambda t: t, _fresh(y), share=0.05))
    assert few["copies"]["flag"] and any("ratio" in f for f in few["copies"]["fired"]), few["copies"]["fired"]
    assert 0.04 < few["copies"]["pixels"]["ratio"]["share"] < 0.1


def test_the_copy_search_sees_every_training_image_whatever_max_images(finished: Path, tmp_path: Path) -> None:
    q = _with_fakes(finished, tmp_path, lambda x, y, train: _copies_of_train(y, train, lambda t: t, x, share=0.5),
                    "evaluate.max_images=12")
    px = q["copies"]["pixels"]
    assert px["n_train"] == 36 and px["n_fakes"] == 300  # every training image, every fake
    assert 0.45 < px["overall"]["share"] < 0.6


def test_the_floor_the_fakes_and_the_training_row_are_scored_at_one_size(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "cfg.yaml", _config(tmp_path, sample={"n_per_class": 8}))
    run_all(load_config(path), progress=False)
    q = json.loads((Path(load_config(path).out_dir) / "evaluate" / "quality.json").read_text())
    sizes = {kind: q["overall"][kind]["n_fake"] for kind in ("fake", "floor", "train")}
    assert sizes == {"fake": 24, "floor": 24, "train": 24}, sizes
    for name in CLASSES:
        assert {q["per_class"][name][kind]["n_fake"] for kind in ("fake", "floor", "train")} == {8}


def test_a_class_too_small_for_a_floor_is_said_and_left_out_of_every_row(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    for f in sorted((tmp_path / "images" / "diagonal").iterdir())[20:]:  # 20 diagonals: 12 train, 4 val, 4 test
        f.unlink()
    path = write_yaml(tmp_path / "cfg.yaml", cfg)
    run_all(load_config(path), progress=False)
    q = json.loads((Path(load_config(path).out_dir) / "evaluate" / "quality.json").read_text())
    assert q["n"]["classes_without_floor"] == ["diagonal"]
    assert all(v is None for v in q["per_class"]["diagonal"].values())
    assert q["overall"]["fake"]["n_fake"] == q["overall"]["floor"]["n_fake"] == q["overall"]["train"]["n_fake"] == 24
    run_compare(load_config(path))
    assert "diagonal" in (Path(load_config(path).out_dir) / "compare" / "table.md").read_text().split("Sample quality", 1)[1]


# ----------------------------------------------------------------------------------------------------
# The statistics: a stated false-alarm rate, per-class flags controlled for the number of classes.


def _neighbours(d1: np.ndarray, rng: np.random.Generator) -> Any:
    from ganaug.metrics.copies import Neighbours

    d2 = d1 + rng.gamma(4.0, 0.5, len(d1))
    return Neighbours(torch.from_numpy(d1), torch.from_numpy(d2), torch.zeros(len(d1), dtype=torch.long),
                      torch.zeros(len(d1), dtype=torch.long))


def _simulate(rng: np.random.Generator, classes: int, n_fake: int, n_test: int, copied_classes: int = 0,
              copied_share: float = 0.0) -> Dict[str, Any]:
    """Fakes and test images whose distances to the training set are drawn alike (a generator that copies
    nothing), with `copied_share` of the fakes of the first `copied_classes` classes at distance 0."""
    from ganaug.metrics.copies import criteria, decide

    names = [str(c) for c in range(classes)]
    y_f, y_t = torch.arange(n_fake) % classes, torch.arange(n_test) % classes
    d_f, d_t = rng.chisquare(30, n_fake) * 10, rng.chisquare(30, n_test) * 10
    for c in range(copied_classes):
        idx = np.flatnonzero(y_f.numpy() == c)
        d_f[idx[:max(1, int(copied_share * len(idx)))]] = 0.0
    spaces = {"pixels": criteria(_neighbours(d_f, rng), y_f, _neighbours(d_t, rng), y_t, names, 0.05, 1 / 3)}
    return decide(spaces, alpha=0.05) | {"spaces": spaces}


def test_a_generator_that_copies_nothing_is_flagged_at_most_at_the_stated_rate() -> None:
    rng = np.random.default_rng(0)
    for classes, n_fake, n_test, sims in ((10, 1000, 350, 300), (96, 4800, 4800, 60)):
        rate = np.mean([_simulate(rng, classes, n_fake, n_test)["flag"] for _ in range(sims)])
        assert rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / sims), (classes, rate)


def test_a_few_copies_and_a_few_copied_classes_are_flagged() -> None:
    rng = np.random.default_rng(1)
    few = [_simulate(rng, 10, 2000, 350, copied_classes=10, copied_share=0.05)["flag"] for _ in range(20)]
    assert np.mean(few) >= 0.95
    # 100 classes, 4 of them copied verbatim: 4% of all fakes, each copied class flagged by name.
    out = _simulate(rng, 100, 10000, 5000, copied_classes=4, copied_share=1.0)
    assert out["flag"] and sorted(out["spaces"]["pixels"]["flagged_classes"]) == ["0", "1", "2", "3"]


def test_the_search_aligns_shifts_and_mirrors() -> None:
    from ganaug.metrics.copies import interior, nearest_two, pixel_views, transforms

    rng = np.random.default_rng(2)
    train = torch.from_numpy(np.stack([pattern(i % 3, rng)[None] for i in range(30)]))
    ts = transforms(2, mirror=True)
    assert len(ts) == 50 and ts[0] == (0, 0, False)
    query = torch.cat([torch.roll(train[:5], 2, dims=-2), train[5:10].flip(-1), train[10:15]])
    near = nearest_two(interior(query, 2), pixel_views(train, ts, 2), len(ts))
    assert near.index.tolist() == list(range(15))
    assert bool((near.d1[10:] == 0).all()) and bool((near.ratio < 1 / 3).all())
    plain = nearest_two(interior(query, 2), pixel_views(train, ts[:1], 2), 1)
    assert bool((plain.d1[:10] > 3 * near.d1[:10]).all())  # without the alignment the copies look like strangers


# ----------------------------------------------------------------------------------------------------
# KID's spread and the torchvision extractors' preprocessing.


def test_kid_has_a_spread_when_both_sets_are_the_same_size() -> None:
    from ganaug.metrics.quality import kid

    a, b = torch.randn(400, 8), torch.randn(400, 8) + 0.1
    out = kid(a, b, subsets=20)
    assert out["kid_subset_size"] < 400 and out["kid_std"] > 0


def test_torchvision_extractors_use_their_weights_own_transforms(tmp_path: Path) -> None:
    import torchvision

    from ganaug.config import EvaluateConfig
    from ganaug.metrics.features import build_torchvision

    weights = tmp_path / "squeezenet.pt"
    torch.save(torchvision.models.get_model("squeezenet1_0", weights=None).state_dict(), weights)
    ex = build_torchvision("squeezenet1_0", str(weights), torch.device("cpu"))
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    want = torchvision.models.get_model_weights("squeezenet1_0").DEFAULT.transforms()(x.expand(-1, 3, -1, -1))
    assert torch.allclose(ex.prepare(x), want, atol=1e-5)
    assert EvaluateConfig().copy_alpha > 0


def test_an_evaluation_by_an_older_method_is_redone_and_one_by_another_config_needs_force(finished: Path,
                                                                                          tmp_path: Path) -> None:
    shutil.copytree(load_config(finished).out_dir, tmp_path / "run")
    out = f"out_dir={tmp_path / 'run'}"
    rec_path = tmp_path / "run" / "evaluate" / "stage.json"
    rec = json.loads(rec_path.read_text())
    older = {k: v for k, v in rec["config"]["evaluate"].items() if not k.startswith(("copy_shift", "copy_mirror",
                                                                                       "copy_ratio", "copy_alpha"))}
    rec["config"] = {k: v for k, v in rec["config"].items() if k != "method"} | {"evaluate": older}
    rec["fingerprint"] = "0" * 16  # as an older ganaug's evaluation of this config would be recorded
    rec_path.write_text(json.dumps(rec))
    r = invoke("run", "-c", str(finished), "--set", out)
    assert r.exit_code == 0 and "older ganaug's method" in r.output, r.output
    assert json.loads(rec_path.read_text())["config"]["method"] >= 2
    r = invoke("run", "-c", str(finished), "--set", out, "--set", "evaluate.copy_quantile=0.1")
    assert r.exit_code == 2 and "--force" in r.output
