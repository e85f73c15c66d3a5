"""GANs: every registered family builds at several sizes, trains a few steps and reloads from its checkpoint."""

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from ganaug.checkpoint import save_checkpoint
from ganaug.config import family_schema
from ganaug.errors import CheckpointError
from ganaug.gans import GANS, gan_kwargs, get_gan, list_gans, train_generator
from ganaug.gans.dcgan import plan
from ganaug.stages.train_gan import load_generator
from ganaug.utils import Stats, rng_state


def tiny(name: str, resolution: int = 16) -> Any:
    """A family's config at test sizes: the tiny preset where it has one, else width 4 and z_dim 8; the rest its
    own defaults."""
    g = family_schema(name)(name=name)
    for k, v in {"preset": "tiny", "width": 4, "z_dim": 8}.items():
        if hasattr(g, k) and (k != "z_dim" or not hasattr(g, "preset")):
            setattr(g, k, v)
    for k, v in (GANS.meta(name).get("defaults") or (lambda g, r: {}))(g, max(resolution, 16)).items():
        if getattr(g, k, None) is None and hasattr(g, k):
            setattr(g, k, v)
    return g


def net_kwargs(name: str, resolution: int = 16) -> dict:
    kw = gan_kwargs(tiny(name, resolution), resolution, 3, 3)
    return {k: v for k, v in kw.items() if k not in ("resolution", "channels", "num_classes", "per_class")}


def variants():
    for name in list_gans():
        yield name, False
        if GANS.meta(name).get("per_class"):
            yield name, True


@pytest.mark.parametrize("resolution", [8, 16, 28, 32, 50])
@pytest.mark.parametrize("name, per_class", list(variants()))
def test_networks_build_and_give_the_right_shapes(name: str, per_class: bool, resolution: int) -> None:
    nets = get_gan(name, resolution=resolution, channels=3, num_classes=3, per_class=per_class, **net_kwargs(name, resolution))
    z, y = torch.randn(6, nets.G.z_dim), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        x = nets.G(z, y)
    assert x.shape == (6, 3, resolution, resolution)
    if not name.startswith("stylegan2"):  # StyleGAN2's output is linear (clamped when saved), the others' bounded
        assert float(x.min()) >= -1 and float(x.max()) <= 1
    if nets.D is not None:
        with torch.no_grad():
            assert nets.D(x, y).shape == (6,)


def test_plan_starts_small_and_doubles() -> None:
    assert plan(28) == (7, 2) and plan(32) == (4, 3) and plan(64) == (4, 4) and plan(8) == (4, 1)


def test_projection_discriminator_uses_the_label() -> None:
    nets = get_gan("cgan", resolution=16, channels=1, num_classes=3, z_dim=8, width=4, d_cond="projection")
    x = torch.randn(4, 1, 16, 16)
    nets.D.eval()
    assert not torch.allclose(nets.D(x, torch.zeros(4, dtype=torch.long)), nets.D(x, torch.ones(4, dtype=torch.long)))


@pytest.mark.parametrize("name, per_class", list(variants()))
def test_a_few_training_steps_log_losses_and_write_grids(tmp_path: Path, name: str, per_class: bool) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(3).repeat(8)
    nets = get_gan(name, resolution=16, channels=1, num_classes=3, per_class=per_class, **net_kwargs(name))
    before = {k: v.clone() for k, v in nets.G.state_dict().items()}
    out = train_generator(nets, tiny(name), images=images, labels=labels, num_classes=3, epochs=2, kimg=None, batch_size=8,
                          lr=2e-4, betas=(0.5, 0.999), ema_kimg=1.0, device=torch.device("cpu"), amp_dtype=None,
                          channels_last=False, generator=torch.Generator().manual_seed(0),
                          stats=Stats(tmp_path / "metrics.jsonl"), grid_dir=tmp_path / "grids", grid_every=1, progress=False)
    assert out["step"] == (2 * 3 * 1 if per_class else 2 * 3)  # per class: 8 images -> 1 step per epoch each
    changed = [k for k, v in out["G"].state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training did not move G"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if line]
    assert len(rows) == (2 * 3 if per_class else 2)
    losses = {"vae": ("loss/total", "loss/recon", "loss/kl"), "diffusion": ("loss/diffusion",)}.get(
        name, ("loss/G", "loss/D", "D(x)", "D(G(z))"))
    for key in losses:
        assert key in rows[-1] and np.isfinite(rows[-1][key])
    assert len(list((tmp_path / "grids").glob("*.png"))) == len(rows)


def test_checkpoint_rebuilds_the_generator_without_a_config(tmp_path: Path) -> None:
    kwargs = dict(resolution=16, channels=1, num_classes=3, z_dim=8, width=4, per_class=False, d_cond="concat")
    nets = get_gan("cgan", **kwargs)
    state = {k: v for k, v in nets.G.state_dict().items()}
    save_checkpoint(tmp_path / "g.pt", {
        "kind": "gan", "name": "cgan", "kwargs": kwargs, "state_dict": {"G": state, "D": nets.D.state_dict(),
                                                                        "G_ema": state},
        "optimizer": {}, "step": 0, "rng": rng_state(), "config": {}, "data_fingerprint": "x"})
    G, ckpt = load_generator(tmp_path / "g.pt")
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    nets.G.eval()
    assert torch.equal(G(z, y), nets.G(z, y))
    assert ckpt["data_fingerprint"] == "x"


def test_missing_or_broken_checkpoint_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no gan checkpoint at '.*nothing.pt'; train one"):
        load_generator(tmp_path / "nothing.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_generator(tmp_path / "cut.pt")
    torch.save({"kind": "classifier"}, tmp_path / "clf.pt")
    with pytest.raises(CheckpointError, match="not a ganaug gan checkpoint"):
        load_generator(tmp_path / "clf.pt")


def _without_foreach(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam and AdamW as torch builds them on a CPU by default: the loop over the parameters."""
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        init = cls.__init__

        def loop(self, *args, _init=init, **kwargs):
            kwargs["foreach"] = False
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", loop)


@pytest.mark.parametrize("name", list_gans())
def test_foreach_adam_trains_what_the_per_parameter_loop_does(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every family's optimizers use torch's foreach kernels (fewer kernels than the loop, torch's CPU default): the
    networks after a few steps are those of the loop, bit for bit, so no result changes."""

    def train() -> dict:
        torch.manual_seed(0)
        images = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
        nets = get_gan(name, resolution=16, channels=1, num_classes=3, **net_kwargs(name))
        out = train_generator(nets, tiny(name), images=images, labels=torch.arange(3).repeat(8), num_classes=3, epochs=2,
                              kimg=None, batch_size=8, lr=2e-4, betas=(0.5, 0.999), ema_kimg=1.0,
                              device=torch.device("cpu"), amp_dtype=None, channels_last=True,
                              generator=torch.Generator().manual_seed(0), stats=Stats(None), grid_dir=None,
                              grid_every=1, progress=False)
        return {k: v.clone() for k, v in out["G"].state_dict().items()}

    fast = train()
    with monkeypatch.context() as m:
        _without_foreach(m)
        slow = train()
    assert fast.keys() == slow.keys() and all(torch.equal(fast[k], slow[k]) for k in fast)


def _adversarial() -> list:
    return [n for n in list_gans() if GANS.meta(n).get("trainer") is None]


@pytest.mark.parametrize("name", _adversarial())
def test_the_g_step_computes_no_gradient_for_d_and_trains_what_it_did(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """G's step freezes D (as StyleGAN2-ADA's loop does): each D parameter's gradient is computed only for D's own
    optimizer steps (its step and lazy R1), never for G's, where D's next step would discard it. G and D after a few
    steps are those the loop trained when G's step computed D's gradients too, bit for bit."""
    from ganaug.gans import training

    def train(counts: dict, steps: dict) -> dict:
        torch.manual_seed(0)
        images = torch.randint(0, 256, (24, 1, 16, 16), dtype=torch.uint8)
        nets = get_gan(name, resolution=16, channels=1, num_classes=3, **net_kwargs(name))
        d_params = {id(p): p for p in nets.D.parameters()}
        for p in d_params.values():
            p.register_post_accumulate_grad_hook(lambda p: counts.__setitem__(id(p), counts.get(id(p), 0) + 1))

        def count_step(opt, args, kwargs) -> None:
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) in d_params:
                        steps[id(p)] = steps.get(id(p), 0) + 1

        handle = register_optimizer_step_pre_hook(count_step)
        try:
            g = tiny(name)
            if hasattr(g, "r1_interval"):
                g.r1_interval = 2  # lazy R1 within the run's 6 steps
            out = train_generator(nets, g, images=images, labels=torch.arange(3).repeat(8), num_classes=3, epochs=2,
                                  kimg=None, batch_size=8, lr=2e-4, betas=(0.5, 0.999), ema_kimg=1.0,
                                  device=torch.device("cpu"), amp_dtype=None, channels_last=True,
                                  generator=torch.Generator().manual_seed(0), stats=Stats(None), grid_dir=None,
                                  grid_every=1, progress=False)
        finally:
            handle.remove()
        return {k: v.clone() for k, v in [*out["G"].state_dict().items(), *nets.D.state_dict().items()]}

    counts: dict = {}
    steps: dict = {}
    frozen = train(counts, steps)
    assert steps and counts, "no D step was counted"
    extra = {k: counts[k] - steps[k] for k in counts if counts[k] > steps.get(k, 0)}
    assert not extra, f"D's gradient was computed outside D's steps for {len(extra)} parameter(s)"

    with monkeypatch.context() as m:  # the loop as it was: G's step computes D's gradients as well
        m.setattr(training, "frozen", lambda module: contextlib.nullcontext())
        counts_then: dict = {}
        unfrozen = train(counts_then, {})
    assert sum(counts_then.values()) > sum(counts.values())
    assert frozen.keys() == unfrozen.keys() and all(torch.equal(frozen[k], unfrozen[k]) for k in frozen)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("resolution, channels", [(28, 1), (16, 3), (50, 1)])
def test_the_cgan_discriminator_sees_the_label_maps_as_concatenated_channels(resolution: int, channels: int,
                                                                             channels_last: bool) -> None:
    """D with `d_cond: concat` computes its first convolution as the images' part plus a per-class part: the logits and
    every gradient (D's parameters, the images) are those of the convolution on the concatenated (N, C + K, R, R)
    input, to float rounding."""
    torch.manual_seed(0)
    nets = get_gan("cgan", resolution=resolution, channels=channels, num_classes=5, z_dim=8, width=8)
    D = nets.D
    mem = torch.channels_last if channels_last else torch.contiguous_format
    D = D.to(memory_format=mem)
    for p in D.parameters():  # away from the N(0, 0.02) start, so that the label maps' weights matter
        p.data.normal_(0, 0.3)
    x = torch.randn(6, channels, resolution, resolution).contiguous(memory_format=mem).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 4, 2])

    def concatenated(x: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(y, 5).to(x.dtype)[:, :, None, None].expand(-1, -1, resolution, resolution)
        h = D.features[1:](torch.nn.Conv2d.forward(D.features[0], torch.cat([x, onehot], dim=1)))
        return D.out(h.flatten(1)).squeeze(1)

    logits = D(x, y)
    ref = concatenated(x)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(logits.sum(), [x, *D.parameters()])
    grads_ref = torch.autograd.grad(ref.sum(), [x, *D.parameters()])
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(D(x, torch.zeros(6, dtype=torch.long)), logits)  # the label still matters


def _layout_name(t: torch.Tensor) -> str:
    if t.is_contiguous():
        return "contiguous"
    return "channels_last" if t.is_contiguous(memory_format=torch.channels_last) else "strided"


@pytest.mark.parametrize("name", ["cgan", "dcgan"])
def test_a_channels_last_dcgan_step_never_mixes_layouts_in_an_activation_backward(name: str) -> None:
    """On channels_last networks every ReLU / LeakyReLU backward of a training step gets its gradient in the layout
    of its own output: mixed layouts take torch's strided path (30x slower than the vectorised one for D's last
    LeakyReLU). Where they met: D's flatten before its linear layer, and G's first maps, viewed from a linear
    layer's output."""
    from torch.utils._python_dispatch import TorchDispatchMode

    mixed: list = []

    class Layouts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.leaky_relu_backward.default, torch.ops.aten.threshold_backward.default):
                grad, out = args[0], args[1]
                if grad.dim() == 4 and _layout_name(grad) != _layout_name(out):
                    mixed.append(f"{func.__name__} {tuple(grad.shape)}: {_layout_name(grad)} / {_layout_name(out)}")
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    nets = get_gan(name, resolution=28, channels=1, num_classes=10 if name == "cgan" else 0, z_dim=16, width=8)
    G, D = nets.G.to(memory_format=torch.channels_last), nets.D.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,)) if name == "cgan" else None
    real = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with Layouts():
        fake = G(torch.randn(16, 16), y)
        loss = torch.nn.functional.softplus(-D(real, y)).mean() + torch.nn.functional.softplus(D(fake, y)).mean()
        loss.backward()
    assert not mixed, mixed


@pytest.mark.parametrize("channels_last", [False, True])
def test_flat_linear_is_the_linear_layer_on_the_flattened_maps(channels_last: bool) -> None:
    from ganaug.gans.dcgan import flat_linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(6 * 5 * 5, 3)
    mem = torch.channels_last if channels_last else torch.contiguous_format
    h = torch.randn(4, 6, 5, 5).contiguous(memory_format=mem).requires_grad_(True)
    out, ref = flat_linear(linear, h), linear(h.flatten(1))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(out.square().sum(), [h, linear.weight, linear.bias])
    grads_ref = torch.autograd.grad(ref.square().sum(), [h, linear.weight, linear.bias])
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    assert _layout_name(grads[0]) == _layout_name(h)
