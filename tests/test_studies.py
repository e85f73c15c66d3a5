"""The study configs: each is documented on the docs site, and the imbalanced-faces study runs end to end on
UTKFace-style file names (labels parsed by its regex, one class shrunk, fakes vs oversampling vs nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganaug.config import load_config
from ganaug.stages import run_all

from .conftest import pattern

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "configs" / "studies"
STUDIES_PAGE = ROOT / "docs" / "studies" / "source-projects.md"  # the docs site's page of the studies


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_study_has_its_paragraph(path: Path) -> None:
    assert f"**`{path.name}`**" in STUDIES_PAGE.read_text()


def test_the_faces_study_runs_on_utkface_style_names(tmp_path: Path) -> None:
    root = tmp_path / "UTKFace"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        gender = i % 2
        Image.fromarray(pattern(gender, rng)).save(root / f"{20 + i % 50}_{gender}_{i % 4}_2017010{i % 10}.jpg.png")
    Image.fromarray(pattern(0, rng)).save(root / "61_3.png")  # no gender in the name: skipped and listed
    cfg = load_config(STUDIES / "utkface-shrunk.yaml", [
        f"out_dir={tmp_path / 'run'}", f"data.root={root}", "data.resolution=16", "device=cpu",
        "split={n_per_class: 20, val_per_class: 5, test_per_class: 5, shrink: {class: '1', keep: 0.1}}",
        "gan={name: cgan, epochs: 2, batch_size: 8, z_dim: 8, width: 8}", "gan_seeds=[0]",
        "sample={n_per_class: 20, batch_size: 20}", "seeds=[0]",
        "classifier={name: small-cnn, steps: 4, batch_size: 8, width: 4, eval_every: 2}",
    ])
    run_all(cfg, progress=False)
    manifest = json.loads((tmp_path / "run" / "split" / "manifest.json").read_text())
    assert manifest["classes"] == ["0", "1"] and manifest["skipped"] == ["61_3.png"]
    assert manifest["counts"]["train"] == {"0": 20, "1": 2}  # class 1 shrunk to 10%
    results = {a: json.loads((tmp_path / "run" / "clf" / a / "seed-0" / "result.json").read_text())
               for a in ("nothing", "oversample", "gan-balance")}
    assert results["gan-balance"]["train_pool"] == {"real": 22, "synthetic": 18}  # class 1 topped up to 20
    assert results["oversample"]["arm_config"]["oversample"] is True
    table = json.loads((tmp_path / "run" / "compare" / "table.json").read_text())
    assert [r["arm"] for r in table["rows"]] == ["nothing", "oversample", "gan-balance"]
    assert all(c["status"] == "ok" for c in table["audit"])
