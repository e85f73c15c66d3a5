"""The edit-aware checks at the level of their functions (seconds): the audit's "edits started from training images"
on a hand-written edits.npz, the copy search leaving each edit's own source out, and how near edits stay to their
sources per strength. The real sample stage's end to end: tests/test_edits.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ganaug.data.images import image_hashes
from ganaug.data.synthetic import EDITS_FILE, save_synthetic
from ganaug.metrics.copies import Space, check, interior, nearest_two, own_distance, pixel_views, to_source, transforms
from ganaug.stages.audit import edit_check
from ganaug.stages.evaluate import edit_copies

CLASSES = ["a", "b"]


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _manifest(train: torch.Tensor, val: torch.Tensor, test: torch.Tensor) -> Dict[str, Any]:
    return {part: {"hashes": image_hashes(x)} for part, x in (("train", train), ("val", val), ("test", test))}


def _edited_set(root: Path, sources: torch.Tensor, index: torch.Tensor) -> str:
    """A set of edits of `sources` (their recorded hashes), each claiming the training index `index`."""
    folder = root / "samples" / "seed0"
    save_synthetic(folder, sources.clone(), torch.zeros(len(sources), dtype=torch.long), CLASSES, {}, png=False)
    np.savez(folder / EDITS_FILE, source_index=index.numpy(), source_hash=np.array(image_hashes(sources)),
             strength=np.full(len(sources), 0.5, np.float32), source_label=np.zeros(len(sources), np.int64),
             target_label=np.zeros(len(sources), np.int64))
    return "samples/seed0"


# ----------------------------------------------------------------------------------------------------
# The audit


def test_edits_of_training_images_pass_and_of_test_or_foreign_images_fail(tmp_path: Path) -> None:
    train, val, test = _images(10, 0), _images(4, 1), _images(4, 2)
    manifest = _manifest(train, val, test)
    index = torch.tensor([0, 3, 3, 7])
    ok = edit_check(tmp_path / "ok", [_edited_set(tmp_path / "ok", train[index], index)], manifest)
    assert ok is not None and ok["status"] == "ok", ok
    assert ok["detail"].startswith("4 edits of 3 training images, every source a training image"), ok

    leak = torch.cat([test[:2], val[:1], _images(1, 9)])  # two test images, one validation image, one of no part
    bad = edit_check(tmp_path / "leak", [_edited_set(tmp_path / "leak", leak, torch.arange(4))], manifest)
    assert bad is not None and bad["status"] == "violation", bad
    detail = bad["detail"]
    assert "'samples/seed0'" in detail  # the set, as the runs name it
    assert "4 of 4 edits" in detail and "2 test images" in detail and "1 validation image" in detail, detail
    assert "1 whose source is not an image of this split" in detail and "--force" in detail, detail
    assert "\n" not in detail


def test_a_source_index_that_does_not_hold_the_source_fails_and_an_unedited_set_is_no_check(tmp_path: Path) -> None:
    train, val, test = _images(10, 0), _images(4, 1), _images(4, 2)
    manifest = _manifest(train, val, test)
    wrong = edit_check(tmp_path, [_edited_set(tmp_path, train[[1, 2]], torch.tensor([1, 5]))], manifest)
    assert wrong is not None and wrong["status"] == "violation" and "1 edit(s)" in wrong["detail"], wrong
    plain = tmp_path / "plain"
    save_synthetic(plain / "s", train[:2].clone(), torch.zeros(2, dtype=torch.long), CLASSES, {}, png=False)
    assert edit_check(plain, ["s"], manifest) is None


# ----------------------------------------------------------------------------------------------------
# The copy check


def test_nearest_two_with_exclude_gives_the_second_best() -> None:
    refs = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    query = refs[3][None] + 0.01
    plain = nearest_two(query, lambda t: refs, 1)
    left_out = nearest_two(query, lambda t: refs, 1, exclude=torch.tensor([3]))
    assert int(plain.index[0]) == 3 and int(left_out.index[0]) != 3
    assert float(left_out.d1[0]) == float(plain.d2[0])  # its second best
    none = nearest_two(query, lambda t: refs, 1, exclude=torch.tensor([-1]))
    assert torch.equal(none.d1, plain.d1) and torch.equal(none.index, plain.index)
    two = nearest_two(query, lambda t: refs[2:4], 1, exclude=torch.tensor([1]))  # two references, one left out
    assert int(two.index[0]) == 0 and torch.isinf(two.d2[0])


def _judge(fakes: torch.Tensor, train: torch.Tensor, test: torch.Tensor, own: torch.Tensor) -> Dict[str, Any]:
    ts = transforms(1, mirror=False)
    y = lambda x: torch.arange(len(x)) % 2  # noqa: E731
    space = Space(interior(fakes, 1), y(fakes), interior(test, 1), y(test), pixel_views(train, ts, 1), len(ts),
                  len(train), exclude=own)
    judged, _ = check({"pixels": space}, CLASSES, 0.05, 1 / 3, 0.05)
    return judged


def test_verbatim_edits_of_their_own_sources_are_not_copies_but_copies_of_another_training_image_are() -> None:
    train, test = _images(120, 0), _images(120, 1)
    own = torch.arange(60)
    assert not _judge(train[own], train, test, own)["flag"]  # judged against the other training images
    assert _judge(train[own], train, test, torch.full((60,), -1))["flag"]  # nothing left out: all copies
    assert _judge(train[own + 60], train, test, own)["flag"]  # each a copy of a training image not its source


def test_to_source_summarises_each_strength() -> None:
    d = torch.tensor([0.0, 0.0, 1.0, 10.0, 20.0, 30.0])
    strength = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5, 0.5])
    others = torch.tensor([5.0, 6.0, 7.0, 40.0, 50.0, 60.0])
    out = to_source(d, strength, others, threshold=15.0)
    assert list(out) == ["0", "0.5"]
    assert out["0"]["n"] == 3 and out["0"]["median"] == 0.0 and out["0"]["within_threshold"] == 1.0
    assert out["0.5"]["median"] == 20.0 and out["0.5"]["other_median"] == 50.0
    assert abs(out["0.5"]["p10"] - 12.0) < 1e-9 and abs(out["0.5"]["within_threshold"] - 1 / 3) < 1e-9
    assert to_source(d, strength, others, threshold=None)["0"]["within_threshold"] is None


def test_an_edited_set_reports_aligned_distances_to_its_sources() -> None:
    """Strength 0: the sources themselves (0); strength 1: a shifted source, which the aligned distance matches."""
    train = _images(6, 0)
    fakes = torch.cat([train[:2], torch.roll(train[2:4], 1, dims=-1)])
    edits = {"source_index": np.arange(4), "strength": np.array([0, 0, 1, 1], np.float32)}
    ts = transforms(1, mirror=False)
    assert torch.equal(own_distance(fakes, train[:4], ts, 1), torch.zeros(4))
    near = nearest_two(interior(fakes, 1), pixel_views(train, ts, 1), len(ts), exclude=torch.arange(4))
    out = edit_copies(fakes, train, edits, near, {"overall": {"threshold": 1.0}}, ts, 1)
    assert out["own_source_excluded"] and out["to_source"]["1"]["median"] == 0.0
    assert out["to_source"]["0"]["within_threshold"] == 1.0 and out["to_source"]["0"]["other_median"] > 0
