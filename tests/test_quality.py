"""Sample quality: FID, KID, precision/recall/density/coverage against closed forms and the reference
libraries, the copy check, class consistency, the domain extractor, the evaluate stage and its errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
import yaml

from ganaug.config import load_config
from ganaug.errors import ConfigError
from ganaug.metrics.quality import fid, kid, prdc
from ganaug.stages import run_all, run_compare, run_report

from .conftest import invoke, make_folder, rewrite_synthetic, tiny_config, write_yaml


def gauss(n: int, d: int = 8, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


# ----------------------------------------------------------------------------------------------------
# The arithmetic.


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    a = gauss(2000)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    shifts = [fid(a, gauss(2000, shift=s, seed=1)) for s in (0.0, 0.25, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] < 0.05
    # Two Gaussians with the same covariance: FID = |mu1 - mu2|^2 (here 8 dims x 1.0^2), up to sampling error.
    assert shifts[-1] == pytest.approx(8.0, rel=0.05)


def test_kid_is_unbiased_near_zero_for_two_draws_of_one_distribution() -> None:
    same = [kid(gauss(200, seed=2 * i), gauss(200, seed=2 * i + 1), subsets=20)["kid"] for i in range(20)]
    shifted = kid(gauss(200, seed=100), gauss(200, shift=0.5, seed=101), subsets=20)["kid"]
    mean, sem = float(np.mean(same)), float(np.std(same, ddof=1) / np.sqrt(len(same)))
    assert abs(mean) < 3 * sem + 1e-4  # unbiased: centred on zero (a biased MMD would sit above it)
    assert min(same) < 0 < max(same)
    assert shifted > 10 * max(abs(mean), sem)


def test_kid_subset_size_follows_small_sets() -> None:
    out = kid(gauss(150), gauss(300, seed=1))
    assert out["kid_subset_size"] == 75 and out["kid_subsets"] == 100  # half the smaller set: subsets that differ


def test_precision_recall_match_torch_fidelity_and_density_coverage_match_their_definition() -> None:
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    real, fake = gauss(400, d=6), gauss(300, d=6, shift=0.4, seed=3)
    ours = prdc(real, fake, k_pr=3, k_dc=5)
    p_ref, r_ref = calculate_precision_recall_part(fake.double(), real.double(), 3, 10_000)
    assert ours["precision"] == pytest.approx(p_ref) and ours["recall"] == pytest.approx(r_ref)

    # Density and coverage (Naeem et al. 2020, eq. 3 and 4), written out.
    d_rr = torch.cdist(real.double(), real.double())
    radius = d_rr.kthvalue(5 + 1, dim=1).values  # the 5th neighbour, not counting the point itself
    d_rf = torch.cdist(real.double(), fake.double())  # (real, fake)
    density = float((d_rf < radius[:, None]).sum()) / (5 * len(fake))
    coverage = float((d_rf.min(dim=1).values < radius).double().mean())
    assert ours["density"] == pytest.approx(density) and ours["coverage"] == pytest.approx(coverage)


def test_precision_recall_density_coverage_are_prdcs_own_numbers_on_its_threads() -> None:
    """ganaug runs prdc's distances in one call rather than on prdc's 8 threads: not a number changes."""
    from prdc import compute_prdc

    real, fake = gauss(700, d=64, seed=5), gauss(600, d=64, shift=0.2, seed=6)
    ours = prdc(real, fake, k_pr=3, k_dc=5)
    with contextlib.redirect_stdout(io.StringIO()):
        pr, dc = (compute_prdc(real.numpy(), fake.numpy(), nearest_k=k) for k in (3, 5))
    assert ours == {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"],
                    "coverage": dc["coverage"]}


def test_the_quantile_rule_flags_copies_and_passes_fresh_draws() -> None:
    from ganaug.metrics.copies import nearest_two, quantile_test

    train, test = gauss(300, seed=10), gauss(300, seed=11)

    def d(x: torch.Tensor) -> torch.Tensor:
        return nearest_two(x, lambda t: train, 1).d1

    copies = quantile_test(d(train[:200] + 0.01 * gauss(200, seed=12)), d(test), 0.05)
    fresh = quantile_test(d(gauss(200, seed=13)), d(test), 0.05)
    assert copies["p"] < 1e-6 and copies["share"] > 0.9
    assert fresh["p"] > 0.01 and fresh["share"] < 0.15


# ----------------------------------------------------------------------------------------------------
# The stage, on a tiny finished run.


def _config(tmp: Path, **sections: Any) -> Dict[str, Any]:
    folder = make_folder(tmp / "images", per_class=30)
    return tiny_config(tmp, folder, **{
        "arms": [{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"}],
        "gan": {"epochs": 2}, "split": {"n_per_class": 8, "val_per_class": 4}, "sample": {"n_per_class": 12},
        "evaluate": {"domain": {"steps": 30, "width": 4}, "kid_subsets": 5}, **sections})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("quality")
    path = write_yaml(tmp / "cfg.yaml", _config(tmp))
    run_all(load_config(path), progress=False)
    return path


def test_evaluate_writes_every_number_with_its_floor(evaluated: Path) -> None:
    root = Path(load_config(evaluated).out_dir)
    q = json.loads((root / "evaluate" / "quality.json").read_text())
    assert q["features"] == "domain" and q["n"] == {"fake": 24, "train": 24, "test": 54, "reference": 30, "held_out": 24,
                                                    "fake_all": 36, "per_class": {"bars": 8, "columns": 8, "diagonal": 8},
                                                    "classes_without_floor": []}
    for kind in ("fake", "floor", "train"):
        o = q["overall"][kind]
        assert set(o) >= {"fid", "kid", "precision", "recall", "density", "coverage"} and o["n_real"] == 30
        assert o["n_fake"] == 24
    assert set(q["per_class"]) == {"bars", "columns", "diagonal"}
    assert q["per_class"]["bars"]["fake"]["n_fake"] == 8 and q["per_class"]["bars"]["fake"]["n_real"] == 10
    assert set(q["copies"]) == {"pixels", "features", "flag", "fired", "alpha", "tests", "shift", "mirror"}
    assert q["copies"]["shift"] == 2 and not q["copies"]["mirror"] and q["copies"]["pixels"]["transforms"] == 25
    assert set(q["class_consistency"]["per_class"]) == {"bars", "columns", "diagonal"}
    assert (root / "evaluate" / "closest.png").is_file()
    run_compare(load_config(evaluated))
    md = (root / "compare" / "table.md").read_text()  # the terminal shows the compact table; this file the full one
    assert "| samples |" in md and "| real held-out images (the floor) |" in md and "KID is the unbiased MMD" in md
    table = json.loads((root / "compare" / "table.json").read_text())
    cas = next(r for r in table["quality"] if r["set"] == "samples")["cas"]
    assert cas == pytest.approx(next(r for r in table["rows"] if r["arm"] == "synthetic")["acc_mean"])
    assert (root / "compare" / "quality.csv").read_text().count("\n") == 1 + 3 * 4  # (overall + 3 classes) x 3 kinds
    page = run_report(load_config(evaluated)).read_text()
    assert "Sample quality" in page and "Per class" in page and "Verdicts" in page


def test_the_domain_extractor_saw_exactly_the_training_images(evaluated: Path) -> None:
    root = Path(load_config(evaluated).out_dir)
    manifest = json.loads((root / "split" / "manifest.json").read_text())
    seen = json.loads((root / "features" / "domain" / "trained_on.json").read_text())
    assert seen["indices"] == manifest["train"]["indices"] and seen["hashes"] == manifest["train"]["hashes"]


def test_a_set_of_jittered_training_copies_is_flagged_and_the_gans_is_not(evaluated: Path, tmp_path: Path) -> None:
    src = load_config(evaluated)
    ok = json.loads((Path(src.out_dir) / "evaluate" / "quality.json").read_text())
    assert not ok["copies"]["pixels"]["overall"]["flag"]

    shutil.copytree(src.out_dir, tmp_path / "run")
    cfg = load_config(evaluated, [f"out_dir={tmp_path / 'run'}"])
    from ganaug.stages.split import load_split_data

    data, _ = load_split_data(cfg)
    from ganaug.data.synthetic import read_synthetic

    labels = read_synthetic(tmp_path / "run" / "samples")[1]
    g = torch.Generator().manual_seed(0)

    def copies(images: torch.Tensor) -> torch.Tensor:
        for c in range(3):  # every fake becomes a training image of its class, off by at most 2 grey levels
            idx = torch.nonzero(labels == c).flatten()
            train = data.train.images[data.train.labels == c]
            noise = torch.randint(-2, 3, (len(idx), *train.shape[1:]), generator=g)
            images[idx] = (train[torch.arange(len(idx)) % len(train)].int() + noise).clamp(0, 255).to(torch.uint8)
        return images

    rewrite_synthetic(tmp_path / "run" / "samples", copies, update_record=True)
    r = invoke("evaluate", "-c", str(evaluated), "--set", f"out_dir={tmp_path / 'run'}", "--force")
    assert r.exit_code == 0, r.output
    q = json.loads((tmp_path / "run" / "evaluate" / "quality.json").read_text())
    assert q["copies"]["pixels"]["overall"]["flag"] and q["copies"]["pixels"]["overall"]["share"] > 0.9
    assert all(v["flag"] for v in q["copies"]["pixels"]["per_class"].values())
    assert "COPIES?" in run_compare(cfg)


# ----------------------------------------------------------------------------------------------------
# Extractors and bad input.


def tiny_inception(path: Path, dim: int = 2048) -> Path:
    """A stand-in with the real file's interface (TorchScript with `layers` taking 299 x 299)."""
    class Layers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean(dim=(2, 3)))[:, :, None, None]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = Layers()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    torch.jit.script(Net()).save(str(path))
    return path


def test_the_inception_extractor_reads_the_torchscript_the_clean_fid_way(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ganaug.metrics.features import get_extractor, resize_clean

    ev = SimpleNamespace(features="inception", inception_weights=str(tiny_inception(tmp_path / "inc.pt")), weights=None)
    ext = get_extractor(ev, device=torch.device("cpu"))
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert ext(x).shape == (5, 2048) and ext.dim == 2048
    big = resize_clean(x)
    assert big.shape == (5, 3, 299, 299) and float(big.min()) >= 0 and float(big.max()) <= 255
    assert torch.equal(big[:, 0], big[:, 2])  # grayscale repeated


@pytest.mark.parametrize("case, words", [
    ("missing", "does not exist"),
    ("not torchscript", "is not a TorchScript network"),
    ("wrong size", "gives 10-d features, not the Inception pool's 2048"),
])
def test_a_bad_inception_file_is_one_line(evaluated: Path, tmp_path: Path, case: str, words: str) -> None:
    path = tmp_path / "inception.pt"
    if case == "not torchscript":
        torch.save({"weight": torch.zeros(3)}, path)
    elif case == "wrong size":
        tiny_inception(path, dim=10)
    before = (Path(load_config(evaluated).out_dir) / "evaluate" / "quality.json").read_bytes()
    r = invoke("evaluate", "-c", str(evaluated), "--set", "evaluate.features=inception",
               "--set", f"evaluate.inception_weights={path}", "--force")
    assert r.exit_code == 2 and words in r.stderr and "Traceback" not in r.output, r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert (Path(load_config(evaluated).out_dir) / "evaluate" / "quality.json").read_bytes() == before  # nothing lost


@pytest.mark.parametrize("override, words", [
    ("evaluate.features=inceptoin", "unknown feature extractor 'inceptoin'; did you mean 'inception'"),
    ("gan.select=best-fid", "gan.select' is best-fid, which needs gan.eval_every"),
    ("evaluate.max_images=3", "evaluate.max_images' must be at least 7"),
    ("evaluate.weights=x.pt", "is for a torchvision extractor, not domain"),
])
def test_bad_evaluate_keys_are_config_errors(config_file: Path, override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(config_file, [override])


def test_evaluate_before_sample_and_too_few_fakes_are_one_line_errors(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", _config(tmp_path))
    assert invoke("split", "-c", str(cfg)).exit_code == 0
    r = invoke("evaluate", "-c", str(cfg))
    assert r.exit_code == 2 and "no synthetic set" in r.stderr and "ganaug sample" in r.stderr
    r = invoke("run", "-c", str(cfg), "--set", "sample.n_per_class=4")  # said before any work
    assert r.exit_code == 2 and "'sample.n_per_class' is 4, too few fakes per class for `evaluate`" in r.stderr
    small = ("--set", "sample.n_per_class=4", "--set", "evaluate.enabled=false")
    for stage in ("train-gan", "sample"):
        assert invoke(stage, "-c", str(cfg), *small).exit_code == 0
    r = invoke("evaluate", "-c", str(cfg), *small)
    assert r.exit_code == 2 and "has 4 fake(s) of class 'bars', fewer than the 7" in r.stderr, r.output
    assert not (tmp_path / "run" / "evaluate").exists()


# ----------------------------------------------------------------------------------------------------
# FID during training, and the snapshot it selects.


def test_best_fid_keeps_the_validation_best_snapshot_and_the_audit_checks_its_images(tmp_path: Path) -> None:
    data = _config(tmp_path, gan={"epochs": 4, "eval_every": 1, "select": "best-fid"})
    cfg_file = write_yaml(tmp_path / "c.yaml", data)
    cfg = load_config(cfg_file)
    run_all(cfg, progress=False)
    gan = Path(cfg.out_dir) / "gan"
    rows = [json.loads(line) for line in (gan / "metrics.jsonl").read_text().splitlines()]
    fids = [r["fid/val"] for r in rows]
    assert len(fids) == 4 and all(f >= 0 for f in fids)
    sel = json.loads((gan / "selection.json").read_text())
    best = int(np.argmin(fids)) + 1
    assert sel["pairs"]["all"]["epoch"] == best and sel["pairs"]["all"]["fid"] == pytest.approx(min(fids))
    manifest = json.loads((Path(cfg.out_dir) / "split" / "manifest.json").read_text())
    assert sorted(sel["val_hashes"]) == sorted(manifest["val"]["hashes"])
    md = run_compare(cfg)
    assert "chose its snapshot on the 12 validation images" in json.dumps(json.loads(
        (Path(cfg.out_dir) / "compare" / "table.json").read_text())["audit"])
    sel["val_hashes"][0] = manifest["test"]["hashes"][0]  # as if chosen on a test image
    (gan / "selection.json").write_text(json.dumps(sel))
    assert "PROTOCOL VIOLATION: the GAN saw only training images" in run_compare(cfg) and "Protocol" in md


def test_evaluating_without_selecting_leaves_the_gan_unchanged(tmp_path: Path) -> None:
    """eval_every only watches: the same weights as without it, and the same fingerprint."""
    plain = write_yaml(tmp_path / "a.yaml", _config(tmp_path, out_dir=str(tmp_path / "a")))
    watched = write_yaml(tmp_path / "b.yaml", {**yaml.safe_load(plain.read_text()), "out_dir": str(tmp_path / "b")})
    data = yaml.safe_load(watched.read_text())
    data["gan"]["eval_every"] = 1
    write_yaml(watched, data)
    for c in (plain, watched):
        for stage in ("split", "train-gan"):
            assert invoke(stage, "-c", str(c)).exit_code == 0
    a = torch.load(tmp_path / "a" / "gan" / "checkpoint.pt", weights_only=True)["state_dict"]["G_ema"]
    b = torch.load(tmp_path / "b" / "gan" / "checkpoint.pt", weights_only=True)["state_dict"]["G_ema"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "fid/val" in (tmp_path / "b" / "gan" / "metrics.jsonl").read_text()
    assert json.loads((tmp_path / "a" / "gan" / "stage.json").read_text())["fingerprint"] == json.loads(
        (tmp_path / "b" / "gan" / "stage.json").read_text())["fingerprint"]

