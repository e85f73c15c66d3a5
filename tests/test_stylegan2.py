"""The native StyleGAN2: layers against their textbook forms, presets, config resolution, and tiny runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ganaug.cli import main
from ganaug.config import load_config
from ganaug.errors import ConfigError
from ganaug.gans import get_gan
from ganaug.gans.stylegan2 import MinibatchStd, ModulatedConv2d, preset_values
from ganaug.gans.training import AugmentSettings, train_gan
from ganaug.stages.train_gan import load_generator
from ganaug.utils import Stats, read_jsonl

from .conftest import tiny_config, write_yaml


def tiny(resolution: int, channels: int = 1, conditional: bool = True, num_classes: int = 3):
    v = preset_values("tiny", resolution)
    keys = ("z_dim", "w_dim", "channel_base", "channel_max", "mapping_layers", "mbstd_group", "style_mixing")
    return get_gan("stylegan2", resolution=resolution, channels=channels, num_classes=num_classes,
                   conditional=conditional, **{k: v[k] for k in keys})


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("resolution, channels", [(16, 1), (32, 3), (64, 1), (28, 1), (48, 3)])
def test_networks_build_at_each_resolution(resolution: int, channels: int, conditional: bool) -> None:
    torch.manual_seed(0)
    nets = tiny(resolution, channels, conditional)
    z, y = torch.randn(8, nets.G.z_dim), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    x = nets.G(z, y)
    assert x.shape == (8, channels, resolution, resolution) and x.dtype == torch.float32
    logits = nets.D(x, y)
    assert logits.shape == (8,) and torch.isfinite(logits).all()
    # Networks run at the next power of two: 4, 8, ... up to it, one block each.
    assert nets.G.net_resolution == 2 ** math.ceil(math.log2(resolution))
    assert len(nets.G.blocks) == int(math.log2(nets.G.net_resolution)) - 1
    assert nets.G.num_ws == 2 * len(nets.G.blocks)
    assert nets.G.conditional is conditional and hasattr(nets.D, "mapping") is conditional
    logits.sum().backward()  # gradients reach G's first layer through D
    assert nets.G.mapping.layers[0].weight.grad is not None


def test_the_label_changes_conditional_outputs() -> None:
    torch.manual_seed(0)
    nets = tiny(16)
    nets.G.eval()
    nets.D.eval()
    z = torch.randn(4, nets.G.z_dim)
    a, b = nets.G(z, torch.zeros(4, dtype=torch.long)), nets.G(z, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    assert not torch.allclose(nets.D(a, torch.zeros(4, dtype=torch.long)), nets.D(a, torch.full((4,), 2)))


def test_modulated_conv_equals_the_per_sample_weight_form() -> None:
    """Scaling activations (what ganaug runs) equals the paper's per-sample modulated, demodulated weights."""
    torch.manual_seed(0)
    layer = ModulatedConv2d(6, 5, 3, w_dim=4)
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 4)
    ours = layer(x, w)
    s = layer.affine(w)  # (N, Cin)
    weight = layer.weight * layer.weight_gain  # (Cout, Cin, 3, 3)
    ref = []
    for i in range(3):
        wi = weight * s[i][None, :, None, None]  # modulate
        wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()  # demodulate
        ref.append(F.conv2d(x[i:i + 1], wi, padding=1))
    torch.testing.assert_close(ours, torch.cat(ref), rtol=1e-4, atol=1e-5)
    # Demodulation keeps each output map at about unit variance for unit-variance inputs.
    assert 0.5 < float(ours.detach().std()) < 2.0


def test_minibatch_std_appends_the_group_spread() -> None:
    x = torch.zeros(4, 2, 4, 4)
    x[0] += 1.0  # groups of 4: one sample differs
    out = MinibatchStd(4)(x)
    assert out.shape == (4, 3, 4, 4)
    torch.testing.assert_close(out[:, 2], torch.full((4, 4, 4), math.sqrt(3 / 16)), rtol=1e-4, atol=1e-4)
    assert torch.equal(out[:, :2], x)


def test_truncation_pulls_toward_each_class_mean() -> None:
    torch.manual_seed(0)
    G = tiny(16, num_classes=3).G.eval()
    z = torch.randn(6, G.z_dim)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    at_mean = G(z, y, truncation_psi=0.0)
    # psi = 0: every latent of a class gives that class's mean image; the classes differ.
    torch.testing.assert_close(at_mean[0], at_mean[1])
    torch.testing.assert_close(at_mean[3], at_mean[5])
    assert not torch.allclose(at_mean[0], at_mean[3])
    free = G(z, y)
    half = G(z, y, truncation_psi=0.5)
    spread = lambda t: float(t[:3].detach().std(dim=0).mean())  # noqa: E731
    assert spread(at_mean) < spread(half) < spread(free)


def test_style_mixing_only_while_training() -> None:
    torch.manual_seed(0)
    G = tiny(16).G
    G.style_mixing = 1.0
    z, y = torch.randn(4, G.z_dim), torch.tensor([0, 1, 2, 0])
    ws = G.map(z, y)  # training: the latents after a random cutoff come from another z
    assert not torch.allclose(ws[:, 0], ws[:, -1])
    G.eval()
    ws = G.map(z, y)
    assert torch.equal(ws[:, 0], ws[:, -1])


def test_presets_follow_the_official_numbers() -> None:
    cifar = preset_values("cifar", 32)
    assert (cifar["batch_size"], cifar["mbstd_group"], cifar["r1_gamma"], cifar["ema_kimg"], cifar["lr"],
            cifar["mapping_layers"], cifar["channel_base"], cifar["style_mixing"]) == (64, 32, 0.01, 500.0, 0.0025,
                                                                                      2, 32768, 0.0)
    auto = preset_values("auto", 28)  # run at 32: batch min(4096 // 32, 32) = 32, gamma 0.0002 * 32^2 / 32
    assert auto["batch_size"] == 32 and auto["mbstd_group"] == 4
    assert auto["r1_gamma"] == pytest.approx(0.0064) and auto["ema_kimg"] == pytest.approx(10.0)
    assert preset_values("auto", 256)["batch_size"] == 16
    assert preset_values("auto", 256)["r1_gamma"] == pytest.approx(0.8192)
    for preset in ("auto", "cifar", "small", "tiny"):
        assert preset_values(preset, 64)["betas"] == [0.0, 0.99]


def test_config_fills_the_preset_and_checks_stylegan2_keys(tmp_path: Path, image_folder: Path) -> None:
    def load(**gan):
        raw = tiny_config(tmp_path, image_folder)
        raw["gan"] = gan
        return load_config(write_yaml(tmp_path / "c.yaml", raw))

    cfg = load(name="stylegan2")
    g = cfg.gan
    assert g.preset == "small" and g.batch_size == 32 and g.betas == [0.0, 0.99] and g.r1_interval == 16
    assert g.r1_gamma == pytest.approx(0.0002 * 16 ** 2 / 32) and g.augment is None
    assert load(name="stylegan2", preset="tiny", lr=0.001).gan.lr == 0.001  # a set key wins over the preset
    ada = load(name="stylegan2-ada").gan
    assert (ada.augment, ada.ada_target, ada.ada_interval, ada.ada_kimg, ada.augpipe) == ("ada", 0.6, 4, 500.0, "bgc")
    official = load(name="stylegan2-ada", impl="official", repo="sg2ada").gan
    assert (official.preset, official.z_dim, official.batch_size, official.snap, official.gpus) == ("auto", 512, 32, 50, 1)
    cgan = load(name="cgan").gan  # the DCGAN family keeps its own numbers and no stylegan2 keys
    assert (cgan.lr, cgan.betas, cgan.batch_size) == (0.0002, [0.5, 0.999], 64)
    assert not hasattr(cgan, "preset") and not hasattr(cgan, "r1_gamma")  # stylegan2 keys, not in cgan's schema
    for gan, msg in [
        ({"name": "cgan", "r1_gamma": 1.0}, r"'gan.r1_gamma' applies to stylegan2, stylegan2-ada, not cgan"),
        ({"name": "stylegan2", "preset": "huge"}, r"'gan.preset' must be one of"),
        ({"name": "stylegan2", "augment_p": 0.3}, r"'gan.augment_p' only applies with gan.augment: ada or fixed "
                                                   r"or diffaugment, and gan.augment is none"),
        ({"name": "cgan", "augment": "diffaugment", "ada_kimg": 100}, r"'gan.ada_kimg' only applies with "
                                                                       r"gan.augment: ada, and gan.augment is diffaugment"),
        ({"name": "cgan", "augment": "fixed", "augment_p": 0.2, "diffaugment": "color"}, r"'gan.diffaugment' only"),
        ({"name": "stylegan2", "augment": "fixed"}, r"'gan.augment_p' must be set for augment: fixed"),
        ({"name": "stylegan2", "augment": "ada", "augpipe": "bgcx"}, r"'gan.augpipe' must be one of"),
        ({"name": "stylegan2", "augment": "diffaugment", "diffaugment": "color,blur"}, r"'gan.diffaugment'"),
        ({"name": "stylegan2", "augment": "ada", "ada_target": 1.5}, r"'gan.ada_target' must be in \(0, 1\)"),
        ({"name": "stylegan2", "style_mixing": 2}, r"'gan.style_mixing' must be a probability"),
        ({"name": "stylegan2", "kimg": 0}, r"'gan.kimg' must be positive"),
        ({"name": "stylegan2-ada", "impl": "official"}, r"'gan.repo' must name a checkout.*gan.name: stylegan2"),
        ({"name": "stylegan2", "gpus": 2}, r"'gan.gpus' applies to stylegan2-ada, not stylegan2"),
        ({"name": "stylegan2-ada", "impl": "official", "repo": "sg2ada", "z_dim": 64},
         r"'gan.z_dim' is 64, but the official train.py takes it from --cfg=auto \(512\)"),
        ({"name": "stylegan2-ada", "impl": "official", "repo": "sg2ada", "preset": "small"},
         r"'gan.preset' 'small' is ganaug's own"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            load(**gan)
    raw = tiny_config(tmp_path, image_folder, data={"resolution": 8})
    raw["gan"] = {"name": "stylegan2"}  # the tiny config's cgan keys (width) are not stylegan2's
    with pytest.raises(ConfigError, match=r"'data.resolution' is 8; stylegan2 works from 16 to 256"):
        load_config(write_yaml(tmp_path / "c8.yaml", raw))
    raw = tiny_config(tmp_path, image_folder, sample={"truncation": 0.7})
    with pytest.raises(ConfigError, match=r"'sample.truncation' applies to stylegan2, and no generator of this config is one"):
        load_config(write_yaml(tmp_path / "ct.yaml", raw))


def test_training_applies_lazy_r1_and_logs_ada_p(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(3).repeat(8)
    nets = tiny(16)
    out = train_gan(nets, images=images, labels=labels, num_classes=3, epochs=99, kimg=0.08, batch_size=8,
                    lr=0.0025, betas=(0.0, 0.99), ema_kimg=1.0, r1_gamma=0.1, r1_interval=4,
                    augment=AugmentSettings(kind="ada", p=0.0, augpipe="bgc", ada_interval=2, ada_kimg=0.1),
                    device=torch.device("cpu"), amp_dtype=None, channels_last=False,
                    generator=torch.Generator().manual_seed(0), stats=Stats(tmp_path / "m.jsonl"), progress=False)
    assert out["step"] == 10 and out["cur_nimg"] == 80  # kimg 0.08 at batch 8, not 99 epochs
    rows = read_jsonl(tmp_path / "m.jsonl")
    assert len(rows) == 4  # a tick per pass over the 24 images (3 steps), the last one short
    assert all("augment/p" in r and 0 <= r["augment/p"] <= 1 for r in rows)
    assert sum("loss/r1" in r for r in rows) >= 2  # steps 0, 4, 8
    a = out["augment"]["all"]
    assert a["kind"] == "ada" and a["p"] == pytest.approx(rows[-1]["augment/p"], abs=0.2)
    # 5 adjustments of 8 * 2 / 100 = 0.16 each: p moved in steps of that size, starting from 0.
    assert round(a["p"] / 0.16, 6) == pytest.approx(round(a["p"] / 0.16))


@pytest.mark.parametrize("augment", ["ada", "diffaugment", "fixed"])
def test_every_family_trains_with_augmentation(tmp_path: Path, augment: str) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(2).repeat(8)
    for name, kw in [("cgan", {"z_dim": 8, "width": 4}), ("dcgan", {"z_dim": 8, "width": 4, "per_class": True})]:
        nets = get_gan(name, resolution=16, channels=1, num_classes=2, **kw)
        settings = AugmentSettings(kind=augment, p=0.5 if augment == "fixed" else None, augpipe="bgc",
                                   diffaugment="color,translation,cutout")
        out = train_gan(nets, images=images, labels=labels, num_classes=2, epochs=2, batch_size=8, lr=2e-4,
                        betas=(0.5, 0.999), ema_kimg=0.0, augment=settings, device=torch.device("cpu"),
                        amp_dtype=None, channels_last=False, generator=torch.Generator().manual_seed(0),
                        stats=Stats(tmp_path / f"{name}-{augment}.jsonl"), progress=False)
        rows = read_jsonl(tmp_path / f"{name}-{augment}.jsonl")
        assert all("augment/p" in r for r in rows)
        assert set(out["augment"]) == ({"class0", "class1"} if name == "dcgan" else {"all"})
        if augment != "ada":  # fixed: the given p; DiffAugment: every op on every image (p = 1)
            assert all(r["augment/p"] == (0.5 if augment == "fixed" else 1.0) for r in rows)


def test_a_tiny_stylegan2_run_writes_checkpoints_and_samples(tmp_path: Path, image_folder: Path) -> None:
    raw = tiny_config(tmp_path, image_folder, gan={"name": "stylegan2", "preset": "tiny", "kimg": 0.064,
                                                   "augment": "ada", "ada_kimg": 1, "grid_every": 1},
                      sample={"n_per_class": 7, "truncation": 0.7, "batch_size": 16, "grid_per_class": 2},
                      arms=[{"name": "synthetic", "data": "synthetic"}])
    raw["gan"].pop("width", None)
    cfg_path = write_yaml(tmp_path / "sg2.yaml", raw)
    res = CliRunner().invoke(main, ["run", "-c", str(cfg_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    run = Path(raw["out_dir"])
    G, ckpt = load_generator(run / "gan" / "checkpoint.pt")
    assert ckpt["name"] == "stylegan2" and ckpt["cur_nimg"] == 64 and ckpt["augment"]["all"]["kind"] == "ada"
    assert ckpt["kwargs"]["channel_max"] == 16 and G.net_resolution == 16
    rows = read_jsonl(run / "gan" / "metrics.jsonl")
    assert rows and all("augment/p" in r and "img_per_s" in r for r in rows)
    assert list((run / "gan" / "grids").glob("*.png"))
    meta = json.loads((run / "samples" / "stage.json").read_text())
    assert meta["config"]["sample"]["truncation"] == 0.7
    from ganaug.data.synthetic import read_synthetic

    images, _, _ = read_synthetic(run / "samples")
    assert images.shape == (21, 1, 16, 16) and images.dtype == torch.uint8
    assert (run / "clf" / "synthetic" / "seed-0" / "result.json").exists()
    saved = load_config(run / "config.yaml")  # the saved config holds the preset's numbers and loads again
    assert saved.gan.channel_base == 256 and saved.gan.r1_interval == 16


def test_the_benchmark_script_times_a_step_per_preset_and_resolution() -> None:
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_stylegan2.py"
    args = [sys.executable, str(script), "--presets", "tiny", "--resolutions", "16,32", "--steps", "1",
            "--channels", "1", "--classes", "3", "--augment", "ada"]
    repo = os.environ.get("GANAUG_SG2ADA_REPO")  # a checkout of NVlabs/stylegan2-ada-pytorch adds the ratio
    if repo and Path(repo).is_dir():
        args += ["--official", repo]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("tiny")]
    assert [r[1] for r in rows] == ["16", "32"]
    for r in rows:
        assert float(r[3]) > 0 and float(r[4]) > 0  # ms per step, images per second
        if repo:
            assert float(r[-1]) > 0  # official / native
