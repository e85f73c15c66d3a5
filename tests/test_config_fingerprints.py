"""Every bundled config keeps the fingerprints its stages had when they were recorded (tests/data/
config_fingerprints.json, made before config became typed models), so the run folders they name stay "done"."""

import json
from pathlib import Path

import pytest

from ganaug.config import load_config, sweep_experiments
from ganaug.stages import records

ROOT = Path(__file__).resolve().parents[1]
RECORDED = json.loads((ROOT / "tests" / "data" / "config_fingerprints.json").read_text())


def fingerprints(cfg) -> dict:
    out = {"split": records.stage_fingerprint(cfg, records.SPLIT), "features": records.stage_fingerprint(cfg, records.FEATURES)}
    for rep in cfg.replicates:
        for stage in (records.GAN, records.SAMPLES, records.EVALUATE):
            out[f"{stage.name}:{rep.generator}/{rep.seed}"] = records.stage_fingerprint(cfg, stage, rep)
    for arm in cfg.all_arms:
        for seed in cfg.seeds:
            out[f"clf:{arm.name}:{seed}"] = records.clf_fingerprint(cfg, arm, seed)
    return out


def test_every_bundled_config_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", sorted(RECORDED))
def test_fingerprints_unchanged(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    assert fingerprints(cfg) == RECORDED[path]["fingerprints"]
    if "sub" in RECORDED[path]:
        assert {f"{v:g}": fingerprints(sub) for v, sub in sweep_experiments(cfg)} == RECORDED[path]["sub"]
