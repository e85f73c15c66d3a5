"""A conditional VAE (Kingma & Welling 2014; Sohn et al. 2015): a convolutional encoder q(z | x, y), a Gaussian
latent joined with a class embedding, a deconvolutional decoder p(x | z, y).

The objective is the negative ELBO: a likelihood suited to the data (Bernoulli on [0, 1] pixels for
near-binary images such as digits, a Gaussian with a fixed variance, i.e. a scaled L2, otherwise) plus beta
times the KL to N(0, I), beta warmed up linearly over `beta_warmup_kimg`, with free bits (each latent
dimension's KL counted as at least `free_bits` nats, so the posterior does not collapse to the prior early).
Samples come from the prior per class: G(z, y) decodes z ~ N(0, I) with the class's embedding, its mean image.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import distributed
from .base import GanNets, register_gan
from .dcgan import plan
from .likelihood import train_likelihood
from .schema import Float, GeneratorConfig, Int, need


class Encoder(nn.Module):
    """images (N, C, R, R) + one-hot class maps -> mu, logvar (N, z_dim)."""

    def __init__(self, resolution: int, channels: int, num_classes: int, z_dim: int, width: int):
        super().__init__()
        _, k = plan(resolution)
        chans = [min(width * 2**i, width * 8) for i in range(k)]
        layers: List[nn.Module] = [nn.Conv2d(channels + num_classes, chans[0], 4, 2, 1), nn.LeakyReLU(0.2)]  # R/2
        size = resolution // 2
        for i in range(k - 1):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), nn.BatchNorm2d(chans[i + 1]), nn.LeakyReLU(0.2)]
            size //= 2
        self.features = nn.Sequential(*layers)  # (chans[-1]) x size x size
        self.mu = nn.Linear(chans[-1] * size * size, z_dim)
        self.logvar = nn.Linear(chans[-1] * size * size, z_dim)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        onehot = F.one_hot(y, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        h = self.features(torch.cat([x, onehot], dim=1)).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-30, 20)


class Decoder(nn.Module):
    """z (N, z_dim) + class embedding -> pixel logits (N, C, R, R); the DCGAN generator's shape."""

    def __init__(self, resolution: int, channels: int, num_classes: int, z_dim: int, width: int):
        super().__init__()
        from .dcgan import Generator

        self.net = Generator(resolution, channels, z_dim, width, num_classes=num_classes)
        self.net.blocks[-1] = nn.Identity()  # logits out, not tanh

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(z, y)


class CVAE(nn.Module):
    """The generator interface: G(z, y) -> the decoder's mean image in [-1, 1]."""

    def __init__(self, resolution: int, channels: int, num_classes: int, z_dim: int = 32, width: int = 32,
                 likelihood: str = "bernoulli"):
        super().__init__()
        self.resolution, self.z_dim, self.num_classes, self.likelihood = resolution, z_dim, num_classes, likelihood
        self.conditional = True
        self.encoder = Encoder(resolution, channels, num_classes, z_dim, width)
        self.decoder = Decoder(resolution, channels, num_classes, z_dim, width)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean in [0, 1]: Bernoulli's sigmoid; the Gaussian's mean, squashed the same way."""
        return torch.sigmoid(logits)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        assert y is not None, "a conditional VAE needs labels"
        return self.mean(self.decoder(z, y)) * 2 - 1  # (N, C, R, R) in [-1, 1]

    @torch.no_grad()
    def edit(self, x0: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, strength: torch.Tensor,
             noise: torch.Tensor, *, invert: bool = False, steps: Optional[int] = None,
             guidance: Optional[float] = None) -> torch.Tensor:
        """x0 (N, C, R, R) in [-1, 1] of classes y_src -> its edit toward y_tgt, (N, C, R, R) in [-1, 1]: the
        posterior mean mu = encoder(x0, y_src), z = sqrt(1 - s^2) mu + s noise (noise (N, z_dim) ~ N(0, I)),
        decoded with y_tgt. s = 0 is the reconstruction of mu, s = 1 a prior sample, G(noise, y_tgt). Run in eval
        mode (BatchNorm's running statistics), each module's mode restored after. `invert`, `steps` and
        `guidance` are the diffusion model's and unused: the encoder is the VAE's inversion."""
        modes = {m: m.training for m in self.modules()}
        self.eval()
        try:
            mu, _ = self.encoder(x0, y_src)  # (N, z_dim)
            s = torch.as_tensor(strength, dtype=mu.dtype, device=mu.device).flatten().expand(len(mu))[:, None]
            z = (1 - s**2).sqrt() * mu + s * noise.reshape(mu.shape).to(mu.dtype)
            return self(z, y_tgt)
        finally:
            for m, mode in modes.items():
                m.training = mode

    def loss(self, x: torch.Tensor, y: torch.Tensor, beta: float, free_bits: float, sigma: float,
             generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(negative ELBO per image, reconstruction term, KL term) for x in [-1, 1]."""
        mu, logvar = self.encoder(x, y)
        # (N, z_dim); under torchrun, this slice's rows of the global batch's draw
        eps = distributed.draw(lambda m: torch.randn((m,) + mu.shape[1:], generator=generator, device=mu.device,
                                                     dtype=mu.dtype), len(mu))
        z = mu + (0.5 * logvar).exp() * eps  # the reparameterisation trick
        logits = self.decoder(z, y)
        target = (x + 1) / 2  # [0, 1]
        if self.likelihood == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        else:  # Gaussian with fixed sigma: a scaled L2 (the constant dropped)
            recon = ((self.mean(logits) - target) ** 2).flatten(1).sum(1) / (2 * sigma**2)
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # (N, z_dim) nats
        # Free bits clamp the batch's mean KL per dimension: the global batch's under torchrun (`batch_mean`).
        kl = distributed.batch_mean(kl_dims).clamp(min=free_bits).sum() if free_bits > 0 else kl_dims.sum(1).mean()
        return recon.mean() + beta * kl, recon.mean(), kl


# ----------------------------------------------------------------------------------------------------
# The family: its config, defaults, builder and training loop.


class VaeConfig(GeneratorConfig):
    """vae's keys."""

    name: Literal["vae"] = "vae"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    z_dim: Optional[Int] = None
    """The latent's size [32]"""
    width: Int = 32
    """Base channel count of encoder and decoder"""
    beta: Float = 1.0
    """The KL weight (1: the ELBO)"""
    beta_warmup_kimg: Optional[Float] = None
    """Thousands of images over which beta rises from 0 [none: no warm-up]"""
    free_bits: Float = 0.0
    """Nats per latent dimension the KL is not pushed below"""
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    """bernoulli for near-binary images (digits), or gaussian"""
    sigma: Float = 0.1
    """gaussian: the fixed standard deviation of p(x | z) on [0, 1] pixels"""

    def check(self) -> None:
        super().check()
        need(self.beta >= 0, "beta", f"must be 0 or more, got {self.beta}")
        need(self.free_bits >= 0, "free_bits", f"must be 0 or more nats, got {self.free_bits}")
        need(self.beta_warmup_kimg is None or self.beta_warmup_kimg > 0, "beta_warmup_kimg",
             f"must be positive (or left out), got {self.beta_warmup_kimg}")
        need(self.sigma > 0, "sigma", f"must be positive, got {self.sigma}")
        need(self.width >= 1, "width", f"must be 1 or more, got {self.width}")


def vae_defaults(g: object, resolution: Optional[int]) -> Dict[str, object]:
    return {"batch_size": 64, "z_dim": 32, "lr": 0.001, "betas": [0.9, 0.999], "ema_kimg": 10.0}


def vae_kwargs(g: VaeConfig, resolution: int, channels: int, num_classes: int) -> Dict[str, object]:
    return {"resolution": resolution, "channels": channels, "num_classes": num_classes, "z_dim": g.z_dim,
            "width": g.width, "likelihood": g.likelihood}


def train_vae(nets: GanNets, g: VaeConfig, **common: Any) -> Dict[str, Any]:
    """The negative ELBO, beta warmed up over beta_warmup_kimg, free bits; the likelihood loop does the rest."""
    warmup = (g.beta_warmup_kimg or 0) * 1000

    def loss(model: CVAE, x: torch.Tensor, y: torch.Tensor, cur_nimg: int, gen: torch.Generator) -> tuple:
        beta = g.beta * (min(1.0, cur_nimg / warmup) if warmup else 1.0)
        total, recon, kl = model.loss(x, y, beta=beta, free_bits=g.free_bits, sigma=g.sigma, generator=gen)
        return total, {"loss/total": total, "loss/recon": recon, "loss/kl": kl, "beta": beta}

    common.pop("channels_last", None)
    return train_likelihood(nets.G, trained=nets.G, loss=loss, **common)


@register_gan("vae", config=VaeConfig, defaults=vae_defaults, kwargs=vae_kwargs, trainer=train_vae, edit=True,
              ddp=True)
def build_vae(*, resolution: int, channels: int, num_classes: int, z_dim: int = 32, width: int = 32,
              likelihood: str = "bernoulli", **_: object) -> GanNets:
    """Conditional VAE: convolutional encoder and decoder, a Gaussian latent with a class embedding, sampled from the prior."""
    return GanNets(G=CVAE(resolution, channels, num_classes, z_dim=z_dim, width=width, likelihood=likelihood), D=None)
