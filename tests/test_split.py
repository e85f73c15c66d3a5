"""Splits: disjoint, deterministic, the modes the source projects used, and a hash-checked manifest."""

from typing import Optional

import pytest
import torch

from ganaug.config import DataConfig, ShrinkConfig, SplitConfig
from ganaug.data import ImageSet
from ganaug.data.split import PARTS, apply_split, make_split
from ganaug.errors import DataError

DATA = DataConfig(source="digits")


def imageset(per_class: int = 20, classes: int = 3, partition: Optional[list] = None) -> ImageSet:
    n = per_class * classes
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ImageSet(
        images=torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g),
        labels=labels,
        classes=[f"c{i}" for i in range(classes)],
        ids=[f"row{i}" for i in range(n)],
        partition=partition,
    )


def sets(manifest: dict) -> dict:
    return {p: set(manifest[p]["indices"]) for p in PARTS}


def test_disjoint_with_requested_counts() -> None:
    m = make_split(imageset(), SplitConfig(n_per_class=5, val_per_class=4), DATA)
    s = sets(m)
    assert not (s["train"] & s["val"]) and not (s["train"] & s["test"]) and not (s["val"] & s["test"])
    assert m["counts"]["train"] == {"c0": 5, "c1": 5, "c2": 5}
    assert m["counts"]["val"] == {"c0": 4, "c1": 4, "c2": 4}
    assert m["counts"]["test"] == {"c0": 11, "c1": 11, "c2": 11}  # the rest
    assert len(m["train"]["hashes"]) == 15 and len(m["train"]["ids"]) == 15


def test_same_config_same_split_other_seed_other_split() -> None:
    ds = imageset()
    a = make_split(ds, SplitConfig(n_per_class=5, seed=3, val_per_class=4), DATA)
    b = make_split(ds, SplitConfig(n_per_class=5, seed=3, val_per_class=4), DATA)
    c = make_split(ds, SplitConfig(n_per_class=5, seed=4, val_per_class=4), DATA)
    assert a == b
    assert sets(a)["train"] != sets(c)["train"] and a["fingerprint"] != c["fingerprint"]


def test_larger_n_extends_the_smaller_training_set_and_keeps_validation() -> None:
    ds = imageset()
    small = make_split(ds, SplitConfig(n_per_class=3, val_per_class=4), DATA)
    large = make_split(ds, SplitConfig(n_per_class=8, val_per_class=4), DATA)
    assert sets(small)["train"] < sets(large)["train"]
    assert sets(small)["val"] == sets(large)["val"]


def test_first_per_class_takes_source_order() -> None:
    m = make_split(imageset(), SplitConfig(first_per_class=3, val_per_class=2), DATA)
    assert m["train"]["indices"] == [0, 1, 2, 20, 21, 22, 40, 41, 42]


def test_fraction_and_test_per_class() -> None:
    m = make_split(imageset(), SplitConfig(fraction=0.25, val_per_class=2, test_per_class=6), DATA)
    assert m["counts"]["train"] == {"c0": 5, "c1": 5, "c2": 5}
    assert m["counts"]["test"] == {"c0": 6, "c1": 6, "c2": 6}


def test_shrink_one_class_by_name_or_index() -> None:
    for cls in (1, "c1"):
        m = make_split(imageset(), SplitConfig(n_per_class=10, val_per_class=3, shrink=ShrinkConfig(class_=cls, keep=0.2)), DATA)
        assert m["counts"]["train"] == {"c0": 10, "c1": 2, "c2": 10}
        assert m["counts"]["val"] == {"c0": 3, "c1": 3, "c2": 3}  # validation stays balanced
    with pytest.raises(DataError, match="no class 'zebra'"):
        make_split(imageset(), SplitConfig(n_per_class=5, shrink=ShrinkConfig(class_="zebra", keep=0.5)), DATA)


def test_asking_for_more_than_a_class_holds_says_how_many_it_has() -> None:
    with pytest.raises(DataError, match=r"class 'c0' has 20 images, fewer than the 18 training \+ 4 validation"):
        make_split(imageset(), SplitConfig(n_per_class=18, val_per_class=4), DATA)


def test_official_test_partition_is_the_test_pool() -> None:
    part = (["train"] * 15 + ["test"] * 5) * 3
    m = make_split(imageset(partition=part), SplitConfig(n_per_class=5, val_per_class=3), DATA)
    assert all(part[i] == "test" for i in m["test"]["indices"]) and len(m["test"]["indices"]) == 15
    assert all(part[i] == "train" for p in ("train", "val") for i in m[p]["indices"])
    pooled = make_split(imageset(partition=part), SplitConfig(n_per_class=5, val_per_class=3, official_test=False), DATA)
    assert len(pooled["test"]["indices"]) == 36


def test_apply_split_checks_every_image_hash() -> None:
    ds = imageset()
    m = make_split(ds, SplitConfig(n_per_class=5, val_per_class=4), DATA)
    data = apply_split(ds, m, "manifest")
    assert data.train.images.shape == (15, 1, 8, 8) and data.test.labels.tolist().count(2) == 11
    assert torch.equal(data.train.images, ds.images[m["train"]["indices"]])
    victim = m["test"]["indices"][0]
    ds.images[victim] = 255 - ds.images[victim]
    with pytest.raises(DataError, match=rf"1 test image\(s\) changed since the split was made \(row{victim}\)"):
        apply_split(ds, m, "manifest")
