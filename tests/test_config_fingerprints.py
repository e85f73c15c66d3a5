"""Every bundled config keeps the fingerprints its stages had when they were recorded (tests/data/
config_fingerprints.json, made before config became typed models), so the run folders they name stay "done"."""

import json
from pathlib import Path

import pytest

from ganaug import utils
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
    monkeypatch.setattr(utils, "native_bf16", lambda: False)  # a CPU where amp: auto is float32, as when recorded
    cfg = load_config(path)
    assert fingerprints(cfg) == RECORDED[path]["fingerprints"]
    if "sub" in RECORDED[path]:
        assert {f"{v:g}": fingerprints(sub) for v, sub in sweep_experiments(cfg)} == RECORDED[path]["sub"]


def test_amp_auto_in_bfloat16_is_another_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU with native bfloat16, amp: auto trains the classifier and the cGAN in bf16: their fingerprints are
    those of amp: bf16, so float32 runs of the same config (made before, or on another CPU) are not taken for them;
    a family that stays in float32 there (the diffusion model) keeps its fingerprint."""
    monkeypatch.chdir(ROOT)
    cfg = load_config("configs/mnist5k-cgan.yaml")
    arm, rep = cfg.all_arms[0], cfg.replicates[0]
    monkeypatch.setattr(utils, "native_bf16", lambda: False)
    fp32 = records.clf_fingerprint(cfg, arm, 0), records.stage_fingerprint(cfg, records.GAN, rep)
    monkeypatch.setattr(utils, "native_bf16", lambda: True)
    auto = records.clf_fingerprint(cfg, arm, 0), records.stage_fingerprint(cfg, records.GAN, rep)
    explicit = load_config("configs/mnist5k-cgan.yaml", overrides=["classifier.amp=bf16", "gan.amp=bf16"])
    assert auto == (records.clf_fingerprint(explicit, arm, 0), records.stage_fingerprint(explicit, records.GAN, rep))
    assert auto[0] != fp32[0] and auto[1] != fp32[1]
    several = load_config("configs/mnist5k-generators.yaml")
    rep = next(r for r in several.replicates if several.gen(r.generator).name == "diffusion")
    monkeypatch.setattr(utils, "native_bf16", lambda: False)
    before = records.stage_fingerprint(several, records.GAN, rep)
    monkeypatch.setattr(utils, "native_bf16", lambda: True)
    assert records.stage_fingerprint(several, records.GAN, rep) == before
