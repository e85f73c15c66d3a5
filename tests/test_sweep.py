"""Sweeps over an experiment key (classifier.steps): one sub-experiment per value, sharing the parent's split
and GAN, each with its own table and audit, and a summary across them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganaug.config import load_config
from ganaug.errors import ConfigError
from ganaug.stages import run_all, run_report

from .conftest import invoke, make_folder, tiny_config, write_yaml

ARMS = [{"name": "real", "data": "real"}, {"name": "real-aug", "data": "real", "augment": "classic"},
        {"name": "synthetic", "data": "synthetic"}]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    folder = make_folder(tmp / "images", per_class=20)
    data = tiny_config(tmp, folder, arms=ARMS, seeds=[0, 1, 2], gan={"epochs": 1},
                       split={"n_per_class": 6, "val_per_class": 4},
                       classifier={"steps": 10, "batch_size": 16, "width": 8, "lr": 0.005, "eval_every": 5},
                       sweep={"key": "classifier.steps", "values": [10, 20]})
    path = write_yaml(tmp / "cfg.yaml", data)
    run_all(load_config(path), progress=False)
    return path


def test_each_value_is_a_sub_experiment_sharing_the_parents_split_and_gan(swept: Path) -> None:
    root = Path(load_config(swept).out_dir)
    assert sorted(p.name for p in (root / "sweep").iterdir()) == ["classifier.steps=10", "classifier.steps=20"]
    for steps in (10, 20):
        sub = root / "sweep" / f"classifier.steps={steps}"
        assert not (sub / "split").exists() and not (sub / "gan").exists()  # the parent's are read
        table = json.loads((sub / "compare" / "table.json").read_text())
        assert [r["arm"] for r in table["rows"]] == ["real", "real-aug", "synthetic"]
        assert {r["budget"]["steps"] for r in table["runs"]} == {steps}
        assert [c["status"] for c in table["audit"]] == ["ok"] * 5  # the shared GAN and split are audited too
        run = json.loads((sub / "clf" / "synthetic" / "seed-0" / "result.json").read_text())
        assert run["synthetic_set"] == "../../samples"
    assert not (root / "clf").exists()  # the parent trains nothing of its own


def test_the_summary_has_every_value_and_arm_and_its_plot(swept: Path) -> None:
    root = Path(load_config(swept).out_dir)
    md = (root / "compare" / "table.md").read_text()
    for steps in (10, 20):
        for arm in ("real", "real-aug", "synthetic"):
            assert f"| {steps} | {arm} | 3 |" in md
    table = json.loads((root / "compare" / "table.json").read_text())
    assert [p["x"] for p in table["series"]["real-aug"]] == [10.0, 20.0]
    assert (root / "compare" / "sweep.png").is_file() and "Protocol audit: all 10 checks passed" in md


def test_rerunning_skips_everything_and_the_report_shows_each_value(swept: Path) -> None:
    r = invoke("run", "-c", str(swept))
    assert r.exit_code == 0, r.output
    assert "23 cells, 23 done, 0 to run" in r.stderr  # the split, features, GAN, samples, evaluation once; 9 x 2 runs
    out = run_report(load_config(swept))
    page = out.read_text()
    assert "classifier.steps = 10" in page and "classifier.steps = 20" in page and page.count("<table") >= 3


def test_dry_run_lists_each_sub_experiment(swept: Path) -> None:
    r = invoke("run", "-c", str(swept), "--dry-run", "--sweep", "classifier.steps=10,20,40")
    assert r.exit_code == 0, r.output
    assert "real seed 0 [" in r.output and "classifier.steps=40]" in r.output
    assert r.output.count("split      done") == 1  # shared by every value of a classifier key


@pytest.mark.parametrize("values, extra, words", [
    ("[10, 15.5]", [], "must be whole numbers for classifier.steps"),
    ("[0, 10]", [], "must be 1 or more for classifier.steps"),
    ("[10, 10]", [], "repeats a value"),
    ("[10, 20]", ["sweep.augment=classic"], "applies to a sweep over an arm key"),
])
def test_bad_experiment_sweeps_are_one_line_errors(config_file: Path, values: str, extra: list, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(config_file, ["sweep.key=classifier.steps", f"sweep.values={values}", *extra])
