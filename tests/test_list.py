"""`ganaug list`: every registered name with its whole description, wrapped, and no torch imported."""

from __future__ import annotations

import re
import subprocess
import sys
import typing
from importlib import import_module
from pathlib import Path
from typing import Dict

import pytest
from click.testing import CliRunner

import ganaug
from ganaug.cli import main
from ganaug.config import AUGMENT_KINDS, EXECUTORS, ArmConfig, MixConfig
from ganaug.registry import read_registrations

# Section title -> (the registry, where it lives; the decorator that fills it, the folder of its modules).
REGISTRIES = {
    "datasets (data.source)": ("ganaug.data:DATASETS", "register_dataset", "data"),
    "generators (gan.name)": ("ganaug.gans:GANS", "register_gan", "gans"),
    "classifiers (classifier.name)": ("ganaug.classifiers:CLASSIFIERS", "register_classifier", "classifiers"),
    "feature extractors (evaluate.features)": ("ganaug.metrics.features:FEATURES", "register_features", "metrics"),
    "executors (executor.name)": ("ganaug.executors:EXECUTORS", "register_executor", "executors"),
}


def sections(columns: int = 80) -> Dict[str, Dict[str, str]]:
    """The printed list: section title -> {name: its description, the wrapped lines joined again}."""
    r = CliRunner(env={"COLUMNS": str(columns)}).invoke(main, ["list"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out: Dict[str, Dict[str, str]] = {}
    entry = None
    for line in r.stdout.splitlines():
        assert len(line) <= columns or " " not in line.strip(), f"not wrapped to {columns} columns: {line!r}"
        if not line.startswith(" "):
            title = line.rstrip(":")
            out[title] = {}
        elif m := re.match(r"  (\S.*?)\s{2,}(\S.*)$", line):
            entry = m.group(1)
            out[title][entry] = m.group(2)
        else:
            assert entry is not None and line.startswith(" " * 6), f"stray line {line!r}"
            out[title][entry] += " " + line.strip()
    return out


def registry(where: str):
    module, name = where.split(":")
    return getattr(import_module(module), name)


@pytest.fixture(scope="module")
def listed() -> Dict[str, Dict[str, str]]:
    return sections()


@pytest.mark.parametrize("title", list(REGISTRIES))
def test_list_names_every_registered_item_with_its_whole_description(listed: Dict[str, Dict[str, str]],
                                                                     title: str) -> None:
    reg = registry(REGISTRIES[title][0])
    entries = {k: v for k, v in listed[title].items() if not k.startswith("<")}  # <torchvision model>: a note
    assert sorted(entries) == reg.names()
    for name, text in entries.items():
        meta = reg.meta(name)
        flag = "" if meta.get("offline", True) else " [needs a download]"
        assert text == meta["description"] + flag, name  # the whole first paragraph, not its first line
        assert text.endswith((".", ")", "]")), f"{title} {name}: description cut mid-sentence: {text!r}"


@pytest.mark.parametrize("title", list(REGISTRIES))
def test_registrations_read_from_source_agree_with_the_registry(title: str) -> None:
    """The list reads the decorators without importing their modules: the same names, descriptions and meta."""
    where, decorator, folder = REGISTRIES[title]
    reg = registry(where)
    read = read_registrations(Path(ganaug.__file__).parent / folder, decorator)
    assert sorted(read) == reg.names()
    for name, meta in read.items():
        real = reg.meta(name)
        assert {k: real[k] for k in meta} == meta, name


def test_list_names_every_arm_kind_augmentation_and_executor(listed: Dict[str, Dict[str, str]]) -> None:
    arms = listed["arm kinds (arms: data, mix)"]
    data_kinds = typing.get_args(typing.get_type_hints(ArmConfig)["data"])
    assert {k.split()[0] for k in arms} == set(data_kinds)
    assert {k.split()[1].split("=")[0] for k in arms if " " in k} == set(MixConfig.model_fields)
    augmentations = listed["augmentations (arms: augment, label_mix)"]
    label_mix = typing.get_args(typing.get_args(typing.get_type_hints(ArmConfig)["label_mix"])[0])
    assert list(augmentations) == [*AUGMENT_KINDS, *label_mix]
    assert list(listed["executors (executor.name)"]) == sorted(EXECUTORS)
    for title, entries in listed.items():
        for name, text in entries.items():
            assert text.endswith((".", ")", "]")), f"{title} {name}: description cut mid-sentence: {text!r}"


def test_list_wraps_to_the_terminal_width() -> None:
    narrow, wide = sections(60), sections(200)  # each line checked against its width in sections()
    assert narrow == wide  # the same text, wrapped differently


def test_list_runs_without_importing_torch() -> None:
    code = ("import sys\nfrom ganaug.cli import main\ntry:\n    main(['list'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy'))\n"
            "print('heavy:', heavy, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "heavy: []" in r.stderr and "serial" in r.stdout
