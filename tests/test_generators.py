"""Several generators in one experiment; the VAE and diffusion families; filtering fakes by a classifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from ganaug.config import load_config
from ganaug.data.synthetic import read_synthetic
from ganaug.errors import ConfigError
from ganaug.gans import get_gan
from ganaug.gans.diffusion import cosine_alpha_bar, q_sample
from ganaug.metrics.features import load_domain

from .conftest import invoke, ok, tiny_config, write_yaml

TINY_VAE = {"name": "vae", "epochs": 2, "batch_size": 8, "z_dim": 4, "width": 4, "grid_every": 1}
TINY_DIFFUSION = {"name": "diffusion", "preset": "tiny", "timesteps": 50, "epochs": 2, "batch_size": 8, "grid_every": 1}
TINY_CGAN = {"name": "cgan", "epochs": 2, "batch_size": 8, "z_dim": 8, "width": 8, "grid_every": 1}


def one_generator(tmp_path: Path, folder: Path, gan: Dict[str, Any], **sections: Any) -> Path:
    raw = tiny_config(tmp_path, folder, **sections)
    raw["gan"] = gan
    if gan["name"] == "diffusion":
        raw["sample"] = {**raw["sample"], "steps": 4}
    return write_yaml(tmp_path / "one.yaml", raw)


# ----------------------------------------------------------------------------------------------------
# Each family owns its keys.


@pytest.mark.parametrize("gan, msg", [
    ({"name": "cgan", "beta": 4.0}, r"'gan.beta' applies to vae, not cgan"),
    ({"name": "vae", "r1_gamma": 1.0}, r"'gan.r1_gamma' applies to stylegan2, stylegan2-ada, not vae"),
    ({"name": "vae", "augment": "ada"}, r"'gan.augment' applies to .*, not vae"),
    ({"name": "diffusion", "z_dim": 16}, r"'gan.z_dim' applies to .*, not diffusion"),
    ({"name": "vae", "likelihood": "poisson"}, r"'gan.likelihood' must be one of"),
    ({"name": "vae", "beta": -1}, r"'gan.beta'"),
    ({"name": "diffusion", "prediction": "x0"}, r"'gan.prediction' must be one of"),
    ({"name": "diffusion", "preset": "huge"}, r"'gan.preset' must be one of"),
    ({"name": "diffusion", "timesteps": 3}, r"'gan.timesteps' must be between 10 and 10000"),
    ({"name": "diffusion", "label_dropout": 1.0}, r"'gan.label_dropout' must be in \[0, 1\)"),
])
def test_a_key_of_another_family_or_a_bad_value_names_the_key(tmp_path: Path, image_folder: Path,
                                                              gan: Dict[str, Any], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        load_config(one_generator(tmp_path, image_folder, gan))


@pytest.mark.parametrize("edit, msg", [
    (lambda c: c["arms"][1].pop("generator"), r"'arms\[1\].generator' must name whose fakes arm 'synthetic-cg' uses"),
    (lambda c: c["arms"][1].update(generator="nope"), r"'arms\[1\].generator' names no generator \('nope'\)"),
    (lambda c: c["arms"][0].update(generator="cg"), r"'arms\[0\].generator'"),
    (lambda c: c["generators"]["cg"].update(beta=2.0), r"'generators.cg.beta' applies to vae, not cgan"),
    (lambda c: c["generators"].update({"a/b": TINY_CGAN}), r"'generators.a/b' must be a folder-safe name"),
    (lambda c: c.update(gan=TINY_CGAN), r"'gan' is set beside generators:"),
    (lambda c: c["sample"].update(truncation=0.7), r"'sample.truncation' applies to stylegan2, and no generator"),
])
def test_bad_generators_sections_name_the_key(tmp_path: Path, image_folder: Path, edit: Any, msg: str) -> None:
    raw = two_generators(tmp_path, image_folder)
    edit(raw)
    with pytest.raises(ConfigError, match=msg):
        load_config(write_yaml(tmp_path / "bad.yaml", raw))


# ----------------------------------------------------------------------------------------------------
# Two generators in one experiment, end to end.


def two_generators(tmp_path: Path, folder: Path) -> Dict[str, Any]:
    raw = tiny_config(tmp_path, folder)
    del raw["gan"]
    raw["generators"] = {"cg": dict(TINY_CGAN), "va": dict(TINY_VAE)}
    raw["arms"] = [
        {"name": "real", "data": "real"},
        {"name": "synthetic-cg", "data": "synthetic", "generator": "cg"},
        {"name": "synthetic-va", "data": "synthetic", "generator": "va"},
        {"name": "real+5-va", "data": "mixed", "mix": {"add": 5}, "generator": "va"},
    ]
    raw["seeds"] = [0, 1]
    return raw


def test_two_generators_train_sample_evaluate_and_compare_side_by_side(tmp_path: Path, image_folder: Path) -> None:
    cfg = write_yaml(tmp_path / "two.yaml", two_generators(tmp_path, image_folder))
    ok("run", "--config", str(cfg))
    run = tmp_path / "run"
    for name, family in (("cg", "cgan"), ("va", "vae")):
        ckpt = torch.load(run / "gan" / name / "checkpoint.pt", weights_only=True)
        assert ckpt["name"] == family and ckpt["kind"] == "gan"
        assert (run / "gan" / name / "training.png").is_file() and (run / "gan" / name / "trained_on.json").is_file()
        images, labels, meta = read_synthetic(run / "samples" / name)
        assert len(images) == 30 and meta["generator"] == name and meta["family"] == family
        assert (run / "samples" / name / "grid.png").is_file()
        assert json.loads((run / "evaluate" / name / "quality.json").read_text())["family"] == family
    for arm, gen in (("synthetic-cg", "cg"), ("synthetic-va", "va"), ("real+5-va", "va"), ("real", None)):
        for seed in (0, 1):
            res = json.loads((run / "clf" / arm / f"seed-{seed}" / "result.json").read_text())
            assert res["generator"] == gen and res["synthetic_set"] == (None if gen is None else f"samples/{gen}")

    table = (run / "compare" / "table.md").read_text()
    assert "| arm | generator | training data |" in table
    main_table = table[table.index("| arm | generator |"):].split("\n\n")[0]  # not the quality or cost tables
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in main_table.splitlines()
             if line.startswith("| ") and not line.startswith("| arm")}
    assert (cells["real"], cells["synthetic-cg"], cells["synthetic-va"], cells["real+5-va"]) == ("-", "cg", "va", "va")
    quality = [line.split(" | ")[0] for line in table.splitlines() if line.startswith("| samples/")]
    assert quality == ["| samples/cg (cg: cgan)", "| samples/va (va: vae)"]
    assert "Protocol audit: all 5 checks passed" in table
    ok("report", "--config", str(cfg))
    page = (run / "report.html").read_text()
    assert page.count("<h3>") >= 2 and "cg" in page and "va (vae)" in page
    again = ok("run", "--config", str(cfg))
    assert "train-gan: cgan (cg)" not in again.stderr and "train-gan: vae (va)" not in again.stderr  # nothing retrained


def test_the_audit_checks_every_generator(tmp_path: Path, image_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganaug.stages import train_gan as gan_stage
    from ganaug.stages.split import load_split_data

    cfg = write_yaml(tmp_path / "two.yaml", two_generators(tmp_path, image_folder))
    ok("split", "--config", str(cfg))
    test_image = load_split_data(load_config(cfg))[0].test.images[0]
    real_train = gan_stage.train_generator

    def leaky(nets: Any, g: Any, **common: Any) -> Dict[str, Any]:  # the VAE (not the cGAN) is handed a test image
        if g.name == "vae":
            common["images"] = common["images"].clone()
            common["images"][0] = test_image
        return real_train(nets, g, **common)

    monkeypatch.setattr(gan_stage, "train_generator", leaky)
    ok("run", "--config", str(cfg))
    run = tmp_path / "run"
    r = ok("compare", "--config", str(cfg))
    assert f"PROTOCOL VIOLATION: the GAN saw only training images: the GAN in '{run / 'gan' / 'va'}' trained on 1 " \
           "validation/test image(s)" in r.stdout, r.stdout
    assert str(run / "gan" / "cg") not in r.stdout


def test_one_arm_from_the_command_line_names_its_generator(tmp_path: Path, image_folder: Path) -> None:
    cfg = write_yaml(tmp_path / "two.yaml", two_generators(tmp_path, image_folder))
    c = ("--config", str(cfg))
    r = invoke("train-clf", *c, "--mix", "p_real=0.5")
    assert r.exit_code == 2 and "--mix p_real=0.5: --generator must name whose fakes the arm uses (generators: cg, va)" \
        in r.stderr, r.output
    r = invoke("train-clf", *c, "--data", "real", "--generator", "cg")
    assert r.exit_code == 2 and "uses no fakes; leave --generator out" in r.stderr
    ok("run", *c)
    ok("train-clf", *c, "--mix", "p_real=0.5", "--generator", "cg", "--seed", "0")
    res = json.loads((tmp_path / "run" / "clf" / "mixed-p0.5-cg" / "seed-0" / "result.json").read_text())
    assert res["generator"] == "cg" and res["synthetic_set"] == "samples/cg"


# ----------------------------------------------------------------------------------------------------
# The VAE and the diffusion model as run-folder stages.


@pytest.mark.parametrize("gan", [TINY_VAE, TINY_DIFFUSION], ids=["vae", "diffusion"])
def test_tiny_vae_and_diffusion_runs_write_checkpoints_grids_and_samples(tmp_path: Path, image_folder: Path,
                                                                          gan: Dict[str, Any]) -> None:
    cfg = one_generator(tmp_path, image_folder, gan)
    c = ("--config", str(cfg))
    ok("split", *c)
    r = ok("train-gan", *c)
    run = tmp_path / "run"
    ckpt = torch.load(run / "gan" / "checkpoint.pt", weights_only=True)
    assert ckpt["name"] == gan["name"] and ckpt["step"] == 2 * 2  # 12 images, batch 8: 2 steps per epoch
    assert ckpt["state_dict"]["D"] == {} and "fingerprint" in ckpt and ckpt["kwargs"]["resolution"] == 16
    rows = [json.loads(x) for x in (run / "gan" / "metrics.jsonl").read_text().splitlines() if x]
    losses = {"vae": ("loss/recon", "loss/kl"), "diffusion": ("loss/diffusion",)}[gan["name"]]
    assert rows and all(k in rows[-1] for k in losses)
    assert (run / "gan" / "training.png").is_file() and len(list((run / "gan" / "grids").glob("*.png"))) == 2
    assert json.loads((run / "gan" / "trained_on.json").read_text())["n"] == 12
    assert "train-gan" in r.stderr
    ok("sample", *c)
    images, labels, meta = read_synthetic(run / "samples")
    assert images.shape == (30, 1, 16, 16) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == [10, 10, 10]
    assert (run / "samples" / "grid.png").is_file() and len(list((run / "samples" / "images").rglob("*.png"))) == 30
    if gan["name"] == "diffusion":
        assert meta["sampler"] == {"steps": 4, "guidance": 1.5}


# ----------------------------------------------------------------------------------------------------
# The diffusion model's arithmetic.


def test_the_forward_process_matches_its_closed_form() -> None:
    """Running the chain x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps step by step gives the law that
    q_sample draws from in one step: mean sqrt(alpha_bar_t) x_0, variance 1 - alpha_bar_t."""
    T = 40
    ab = cosine_alpha_bar(T)
    betas = 1 - ab[1:] / ab[:-1]
    assert torch.allclose(torch.cumprod(1 - betas, 0), ab[1:], atol=1e-12)  # the schedule is consistent
    assert float(ab[0]) == 1.0 and float(ab[-1]) < 1e-3 and bool((ab[1:] < ab[:-1]).all())
    gen = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-1, 1, 8, dtype=torch.float64).view(1, 1, 1, 8).expand(20000, 1, 1, 8)
    x = x0.clone()
    for t in range(1, T + 1):
        x = (1 - betas[t - 1]).sqrt() * x + betas[t - 1].sqrt() * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        if t in (1, 10, 25, T):
            want_mean, want_var = ab[t].sqrt() * x0[0], 1 - ab[t]
            assert torch.allclose(x.mean(0), want_mean, atol=0.03), t
            assert torch.allclose(x.var(0), torch.full_like(x.var(0), float(want_var)), atol=0.03), t
            one = q_sample(x0, torch.full((len(x0),), t), torch.randn(x0.shape, generator=gen, dtype=torch.float64), ab)
            assert torch.allclose(one.mean(0), want_mean, atol=0.03) and abs(float(one.var(0).mean() - want_var)) < 0.03
    noise = torch.randn(4, 1, 2, 2, generator=gen, dtype=torch.float64)
    x0s = torch.rand(4, 1, 2, 2, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 20, T])
    got = q_sample(x0s, t, noise, ab)
    assert torch.equal(got[0], x0s[0])  # t = 0 is the data itself
    assert torch.allclose(got[2], ab[20].sqrt() * x0s[2] + (1 - ab[20]).sqrt() * noise[2])


def tiny_sampler(prediction: str = "eps") -> Any:
    torch.manual_seed(0)
    G = get_gan("diffusion", resolution=8, channels=1, num_classes=3, width=8, mults=[1, 2], blocks=1, attention=[],
                timesteps=50, prediction=prediction).G.eval()
    for p in G.parameters():  # a trained-looking network: the U-Net's last layer starts at zero
        p.data.add_(0.05 * torch.randn(p.shape))
    return G


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_guidance_zero_is_the_unconditional_prediction(prediction: str) -> None:
    G = tiny_sampler(prediction)
    x, t, y = torch.randn(6, 1, 8, 8), torch.tensor([1, 5, 10, 20, 40, 50]), torch.tensor([0, 1, 2, 0, 1, 2])
    null = torch.full_like(y, 3)
    with torch.no_grad():
        uncond, cond = G.eps(x, t, null, 1.0), G.eps(x, t, y, 1.0)
        assert not torch.allclose(uncond, cond)  # the class matters to this network
        assert torch.equal(G.eps(x, t, y, 0.0), uncond)
        assert torch.allclose(G.eps(x, t, y, 2.5), uncond + 2.5 * (cond - uncond), atol=1e-5)
        if prediction == "eps":  # the guided combination is of the network's own output
            raw_u, raw_c = G.net(x, t, null), G.net(x, t, y)
            assert torch.allclose(G.eps(x, t, y, 2.5), raw_u + 2.5 * (raw_c - raw_u), atol=1e-5)
        z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1))
        a = G(z, torch.tensor([0, 0, 0]), steps=5, guidance=0.0)
        b = G(z, torch.tensor([2, 1, 2]), steps=5, guidance=0.0)
        assert torch.equal(a, b)  # unconditional: the label changes nothing
        assert not torch.equal(G(z, torch.tensor([0, 0, 0]), steps=5), G(z, torch.tensor([2, 1, 2]), steps=5))


def test_ddim_sampling_is_deterministic_for_a_fixed_seed() -> None:
    G = tiny_sampler()
    y = torch.tensor([0, 1, 2, 1])

    def draw(seed: int, steps: int = 6) -> torch.Tensor:
        z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return G(z, y, steps=steps)

    a, b = draw(3), draw(3)
    assert torch.equal(a, b) and a.shape == (4, 1, 8, 8) and float(a.abs().max()) <= 1
    assert not torch.equal(a, draw(4))  # another seed, other images
    assert not torch.equal(a, draw(3, steps=3))  # the number of DDIM steps is a real setting
    with torch.no_grad():  # in chunks as in one batch (sample's batch_size changes no image)
        z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(torch.cat([G(z[:2], y[:2], steps=6), G(z[2:], y[2:], steps=6)]), a, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Filtering fakes by the domain classifier.


def test_the_filter_keeps_only_fakes_the_classifier_recognises_and_records_the_rate(
        tmp_path: Path, image_folder: Path) -> None:
    cfg = one_generator(tmp_path, image_folder, {**TINY_VAE, "epochs": 60, "width": 8, "grid_every": 20},
                        sample={"n_per_class": 10, "batch_size": 16, "grid_per_class": 2,
                                "filter": {"min_confidence": 0.5, "max_draws": 50}},
                        evaluate={"domain": {"steps": 150, "width": 8}, "kid_subsets": 5})
    c = ("--config", str(cfg))
    ok("split", *c)
    ok("train-gan", *c)
    r = ok("sample", *c)
    run = tmp_path / "run"
    images, labels, _ = read_synthetic(run / "samples")
    assert torch.bincount(labels, minlength=3).tolist() == [10, 10, 10]
    clf, _ = load_domain(run / "features" / "domain" / "checkpoint.pt", torch.device("cpu"))
    with torch.no_grad():
        p = torch.softmax(clf(images.float() / 127.5 - 1), 1)
    assert bool((p[torch.arange(30), labels] >= 0.4).all())  # every kept fake passes
    rec = json.loads((run / "samples" / "stage.json").read_text())["filter"]
    assert rec["kept"] == [10, 10, 10] and all(d >= 10 for d in rec["drawn"])
    assert sum(rec["drawn"]) > 30, rec  # some fakes were refused (else this filter tested nothing)
    assert rec["rate"] == [k / d for k, d in zip(rec["kept"], rec["drawn"])]
    assert "the filter kept 30 of" in r.stderr
    ok("run", *c)  # evaluated and compared: the quality table shows what the filter kept
    q = json.loads((run / "evaluate" / "quality.json").read_text())
    assert q["filter"]["kept"] == [10, 10, 10]
    table = (run / "compare" / "table.md").read_text()
    assert "filter kept % |" in table and f"| {100 * rec['kept_total'] / rec['drawn_total']:.1f} |" in table


def test_a_filter_too_strict_for_the_generator_stops_with_the_rate_and_writes_nothing(tmp_path: Path,
                                                                                      image_folder: Path) -> None:
    cfg = one_generator(tmp_path, image_folder, TINY_CGAN, sample={"n_per_class": 10, "batch_size": 16, "grid_per_class": 2,
                                                                    "filter": {"min_confidence": 0.999999, "max_draws": 2}})
    c = ("--config", str(cfg))
    ok("split", *c)
    ok("train-gan", *c)
    r = invoke("sample", *c)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "sample.filter: only" in r.stderr and "short of the 10 wanted within sample.filter.max_draws 2" in r.stderr
    assert not (tmp_path / "run" / "samples").exists() and not (tmp_path / "run" / "samples.partial").exists()
