"""Generators' edits (`sample.mode: edit`): SDEdit on the diffusion model, posterior-mean interpolation on the VAE."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ganaug.gans import get_gan
from ganaug.gans.base import GANS

STEPS = 4


def diffusion() -> Any:
    """The tiny U-Net, its weights nudged off their zero start so that it predicts something (a trained look)."""
    torch.manual_seed(0)
    G = get_gan("diffusion", resolution=8, channels=1, num_classes=3, width=8, mults=[1, 2], blocks=1, attention=[],
                timesteps=50).G.eval()
    for p in G.parameters():
        p.data.add_(0.05 * torch.randn(p.shape))
    return G


def vae() -> Any:
    torch.manual_seed(0)
    G = get_gan("vae", resolution=16, channels=1, num_classes=3, z_dim=4, width=4).G  # 16: a BatchNorm in the encoder
    for m in G.modules():  # running statistics that are not the batch's own
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return G.eval()


def batch(n: int, size: int, z_dim: int, seed: int = 0) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    return x0, torch.randint(0, 3, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen), \
        torch.randn(n, z_dim, generator=gen)


def test_both_likelihood_families_say_they_edit() -> None:
    assert GANS.meta("diffusion")["edit"] and GANS.meta("vae")["edit"]
    assert not GANS.meta("cgan").get("edit")


# ----------------------------------------------------------------------------------------------------
# Diffusion: SDEdit.


def test_diffusion_strength_zero_is_the_source_and_one_is_noise_sampling() -> None:
    G = diffusion()
    x0, a, b, z = batch(6, 8, G.z_dim)
    assert torch.equal(G.edit(x0, a, b, torch.zeros(6), z, steps=STEPS), x0)  # no step at all
    other = torch.rand(6, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        want = G(z, b, steps=STEPS)
    for source in (x0, other):  # whatever the source
        assert float((G.edit(source, a, b, torch.ones(6), z, steps=STEPS) - want).abs().max()) <= 1e-3


def test_diffusion_edits_at_strength_one_are_distributed_as_noise_samples() -> None:
    G = diffusion()
    n = 64
    x0 = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1).expand(n, -1, -1, -1)
    y = torch.full((n,), 1)
    edits = G.edit(x0, y, y, torch.ones(n), torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(1)),
                   steps=STEPS)
    with torch.no_grad():
        samples = G(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(2)), y, steps=STEPS)
    assert abs(float(edits.mean() - samples.mean())) < 0.05
    assert abs(float(edits.std() - samples.std())) < 0.05
    assert float((edits.mean(0) - samples.mean(0)).abs().mean()) < 0.2  # per pixel, 64 draws each


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_diffusion_edits_move_further_from_the_source_as_strength_grows(prediction: str) -> None:
    G = diffusion()
    if prediction == "v":
        G.prediction = "v"
    x0, a, b, z = batch(12, 8, G.z_dim, seed=3)
    dist = [float((G.edit(x0, a, a, torch.full((12,), s), z, steps=STEPS) - x0).abs().mean())
            for s in (0.0, 0.25, 0.5, 1.0)]
    assert dist[0] == 0 and all(u + 0.05 < v for u, v in zip(dist[:-1], dist[1:])), dist


def test_diffusion_inversion_is_deterministic_and_not_the_noised_edit() -> None:
    G = diffusion()
    x0, a, b, z = batch(4, 8, G.z_dim)
    s = torch.full((4,), 0.5)
    one = G.edit(x0, a, b, s, z, invert=True, steps=STEPS)
    two = G.edit(x0, a, b, s, torch.randn_like(z), invert=True, steps=STEPS)  # the noise is not used
    assert torch.equal(one, two) and one.shape == x0.shape and float(one.abs().max()) <= 1
    assert not torch.allclose(one, G.edit(x0, a, b, s, z, steps=STEPS), atol=1e-3)


def test_diffusion_strengths_per_image_equal_each_strength_alone() -> None:
    G = diffusion()
    x0, a, b, z = batch(7, 8, G.z_dim)
    s = torch.tensor([0.0, 0.5, 1.0, 0.5, 0.25, 0.0, 1.0])
    both = G.edit(x0, a, b, s, z, steps=STEPS)
    for v in s.unique():
        i = (s == v).nonzero().flatten()
        alone = G.edit(x0[i], a[i], b[i], s[i], z[i], steps=STEPS)
        assert torch.allclose(both[i], alone, atol=1e-6), float(v)
    assert torch.equal(both[[0, 5]], x0[[0, 5]])


# ----------------------------------------------------------------------------------------------------
# VAE: z = sqrt(1 - s^2) mu + s eps.


def test_vae_strength_zero_is_the_posterior_mean_and_one_is_a_prior_sample() -> None:
    G = vae()
    x0, a, b, z = batch(6, 16, G.z_dim)
    with torch.no_grad():
        mu, _ = G.encoder(x0, a)
        assert torch.equal(G.edit(x0, a, b, torch.zeros(6), z), G(mu, b))
        assert torch.equal(G.edit(x0, a, b, torch.ones(6), z), G(z, b))
        half = G.edit(x0, a, b, torch.full((6,), 0.6), z)
        assert torch.allclose(half, G(0.8 * mu + 0.6 * z, b), atol=1e-6)
    mixed = torch.tensor([0.0, 1.0, 0.6, 0.0, 1.0, 0.6])  # per image, in one batch
    assert torch.allclose(G.edit(x0, a, b, mixed, z), torch.cat([G.edit(x0[i:i + 1], a[i:i + 1], b[i:i + 1],
                          mixed[i:i + 1], z[i:i + 1]) for i in range(6)]), atol=1e-6)
    assert torch.equal(G.edit(x0, a, b, torch.full((6,), 0.6), z, invert=True), half)  # the encoder is the inversion


def test_vae_edit_uses_running_statistics_and_leaves_the_mode_as_it_was() -> None:
    G = vae()
    x0, a, b, z = batch(6, 16, G.z_dim)
    want = G.edit(x0, a, b, torch.full((6,), 0.3), z)
    G.train()
    got = G.edit(x0, a, b, torch.full((6,), 0.3), z)
    assert torch.equal(got, want)  # eval-mode BatchNorm, not the batch's statistics
    assert G.training and all(m.training for m in G.modules())
    assert not got.requires_grad
