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


@pytest.mark.parametrize("pin", ["ONEDNN_MAX_CPU_ISA=AVX2", "DNNL_MAX_CPU_ISA=avx512_core", "ATEN_CPU_CAPABILITY=avx2"])
def test_a_cpu_held_below_its_bfloat16_instructions_trains_in_float32(pin: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`reproducible: strict` holds the math libraries to AVX2 (and a user may set such a ceiling): there a bf16 CPU
    emulates bfloat16, slowly, and its numbers are not an AVX2 CPU's. amp: auto is then float32, as on that CPU."""
    from ganaug import provenance

    from .conftest import make_folder, ok, tiny_config, write_yaml

    monkeypatch.delenv("GANAUG_CPU_BF16", raising=False)
    monkeypatch.setattr(provenance, "cpu_features", lambda: frozenset({"avx2", "fma", "avx512f", "avx512_bf16"}))
    cfg_path = write_yaml(tmp_path / "tiny.yaml", tiny_config(tmp_path, make_folder(tmp_path / "images")))
    cfg = load_config(str(cfg_path))
    arm = cfg.all_arms[0]
    assert utils.native_bf16()  # this (pretended) CPU multiplies bf16: amp: auto would be bf16
    bf16 = records.clf_fingerprint(cfg, arm, 0)
    key, value = pin.split("=")
    monkeypatch.setenv(key, value)
    assert not utils.native_bf16()
    fp32 = records.clf_fingerprint(cfg, arm, 0)
    monkeypatch.setattr(provenance, "cpu_features", lambda: frozenset({"avx2", "fma"}))
    assert fp32 != bf16 and fp32 == records.clf_fingerprint(cfg, arm, 0)  # an AVX2-only CPU's run
    monkeypatch.setattr(provenance, "cpu_features", lambda: frozenset({"avx2", "fma", "avx512f", "avx512_bf16"}))
    ok("split", "-c", str(cfg_path))
    ok("train-clf", "-c", str(cfg_path), "--data", "real")
    result = json.loads((tmp_path / "run" / "clf" / "real" / "seed-0" / "result.json").read_text())
    assert result["precision"] == "float32"
