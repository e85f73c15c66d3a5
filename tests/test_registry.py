"""Registries: decorators fill them; duplicates raise; unknown names suggest close matches."""

import pytest

from ganaug.classifiers import CLASSIFIERS, list_classifiers
from ganaug.data import DATASETS, list_datasets
from ganaug.errors import ConfigError
from ganaug.gans import GANS, list_gans
from ganaug.registry import Registry


def test_register_get_list_and_meta() -> None:
    reg = Registry("widget")

    @reg.register("b", size=2)
    def build_b() -> str:
        """Makes a b."""
        return "b"

    @reg.register("a")
    def build_a() -> str:
        return "a"

    assert reg.names() == ["a", "b"]
    assert reg.get("b")() == "b"
    assert reg.meta("b") == {"description": "Makes a b.", "size": 2}
    assert "a" in reg and "c" not in reg


def test_duplicate_name_raises() -> None:
    reg = Registry("widget")
    reg.register("x")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("x")(lambda: 2)


def test_unknown_name_suggests_close_matches() -> None:
    reg = Registry("widget")
    reg.register("resnet18")(lambda: 1)
    with pytest.raises(ConfigError, match=r"unknown widget 'resnet19'; did you mean 'resnet18'\?"):
        reg.get("resnet19", "config key 'x'")


def test_the_project_registries_are_filled() -> None:
    assert {"mnist-5k", "digits", "imagefolder", "mnist", "fashion-mnist", "cifar10", "cifar100"} <= set(list_datasets())
    assert {"dcgan", "cgan"} <= set(list_gans())
    assert {"small-cnn", "resnet18"} <= set(list_classifiers())
    for reg in (DATASETS, GANS, CLASSIFIERS):
        for name in reg.names():
            assert reg.meta(name)["description"], f"{name} needs a one-line docstring"
