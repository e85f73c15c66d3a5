"""A class-conditional diffusion model: DDPM training (Ho et al. 2020) with a cosine noise schedule (Nichol &
Dhariwal 2021), epsilon or v prediction (Salimans & Ho 2022), a small U-Net with a class embedding,
classifier-free guidance (Ho & Salimans 2022: labels dropped in training, a guidance scale at sampling) and
DDIM sampling (Song et al. 2021) with any number of steps.

The sampler behind the generator interface: `G(z, y)` takes z of C*H*W values per image (the initial noise)
and runs the deterministic DDIM chain (eta = 0), so fixed z gives fixed images, as a GAN's G does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import distributed
from .base import GanNets, register_gan
from .likelihood import train_likelihood
from .schema import Float, GeneratorConfig, Int, need

# ----------------------------------------------------------------------------------------------------
# The noise schedule.


def cosine_alpha_bar(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t for t = 0..T (alpha_bar_0 = 1), Nichol & Dhariwal's cosine, betas clipped at 0.999."""
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The forward process in closed form: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    a = alpha_bar[t].to(x0.dtype).view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho)."""
    return a.sqrt() * noise - (1 - a).sqrt() * x0


# ----------------------------------------------------------------------------------------------------
# The U-Net.


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time-and-class embedding added between, a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (cout) x s x s
        h = h + self.emb(F.silu(e))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the pixels of a low-resolution feature map (one head)."""

    def __init__(self, c: int):
        super().__init__()
        self.norm, self.qkv, self.out = nn.GroupNorm(min(8, c), c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (N, HW, C)
        return x + self.out(a.transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    """eps (or v) from x_t, t and a class (num_classes means "no class", for classifier-free guidance)."""

    def __init__(self, channels: int, num_classes: int, width: int = 32, mults: Sequence[int] = (1, 2, 2),
                 blocks: int = 1, attention: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        emb = 4 * width
        self.time = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(num_classes + 1, emb)  # the last row: the null class
        self.width = width
        self.inp = nn.Conv2d(channels, width, 3, padding=1)  # (width) x R x R
        self.down = nn.ModuleList()
        skips, c = [width], width
        for level, m in enumerate(mults):
            for _ in range(blocks):
                layers: List[nn.Module] = [ResBlock(c, width * m, emb, dropout)]
                c = width * m
                if level in attention:
                    layers.append(Attention(c))
                self.down.append(nn.ModuleList(layers))
                skips.append(c)
            if level < len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))  # halve
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb, dropout), Attention(c), ResBlock(c, c, emb, dropout)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mults))):
            for i in range(blocks + 1):
                layers = [ResBlock(c + skips.pop(), width * m, emb, dropout)]
                c = width * m
                if level in attention:
                    layers.append(Attention(c))
                if level > 0 and i == blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))  # double
                    layers.append(nn.Conv2d(c, c, 3, padding=1))
                self.up.append(nn.ModuleList(layers))
        self.out = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.time(timestep_embedding(t, self.width)) + self.label(y)  # (N, emb)
        h = self.inp(x.contiguous(memory_format=torch.channels_last))  # channels-last: oneDNN's faster convolutions
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, e) if isinstance(layer, (ResBlock, Attention)) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, e)
        for layers in self.up:
            skip = hs.pop()
            if skip.shape[-1] != h.shape[-1]:  # odd sides (28 -> 14 -> 7): the upsampled map is a pixel larger
                h = h[..., :skip.shape[-2], :skip.shape[-1]]
            h = torch.cat([h, skip], dim=1)
            for layer in layers:
                h = layer(h, e) if isinstance(layer, (ResBlock, Attention)) else layer(h)
        return self.out(h)  # (channels) x R x R


# ----------------------------------------------------------------------------------------------------
# Presets: the U-Net's size.


@dataclass(frozen=True)
class Preset:
    width: int
    mults: tuple
    blocks: int
    attention: tuple


PRESETS: Dict[str, Preset] = {
    "tiny": Preset(8, (1, 2), 1, ()),  # tests
    "small": Preset(16, (1, 2, 2), 1, ()),  # a CPU: the bundled 1,000 MNIST images in under 30 minutes
    "cifar": Preset(128, (1, 2, 2, 2), 2, (1,)),  # Ho et al.'s CIFAR-10 network, attention at 16 x 16
}


# ----------------------------------------------------------------------------------------------------
# Sampling: DDIM with classifier-free guidance, behind the generator interface.


SAMPLE_STEPS, GUIDANCE = 20, 1.5  # DDIM steps and guidance scale when sample.steps / sample.guidance are not set


class DiffusionSampler(nn.Module):
    """G(z, y): z (N, C*H*W) the initial noise, y the classes -> images (N, C, H, W) in [-1, 1], by `steps` DDIM
    steps (eta 0: deterministic) with guidance: eps = eps(no class) + scale * (eps(y) - eps(no class))."""

    def __init__(self, net: UNet, shape: tuple, timesteps: int, prediction: str, steps: int = SAMPLE_STEPS,
                 guidance: float = GUIDANCE):
        super().__init__()
        self.net, self.shape, self.timesteps, self.prediction = net, tuple(shape), timesteps, prediction
        self.steps, self.guidance = steps, guidance
        self.register_buffer("alpha_bar", cosine_alpha_bar(timesteps).float(), persistent=False)
        self.z_dim = int(shape[0] * shape[1] * shape[2])
        self.conditional = True
        self.num_classes = net.num_classes

    def eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, guidance: float) -> torch.Tensor:
        """The (guided) noise estimate at x_t."""
        null = torch.full_like(y, self.num_classes)
        if guidance == 1.0:
            out = self.net(x, t, y)
        elif guidance == 0.0:
            out = self.net(x, t, null)
        else:
            both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
            cond, uncond = both.chunk(2)
            out = uncond + guidance * (cond - uncond)
        if self.prediction == "v":  # eps from v: eps = sqrt(a) v + sqrt(1 - a) x_t
            a = self.alpha_bar[t].view(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * x
        return out

    def _ddim(self, x: torch.Tensor, ts: List[int], y: Optional[torch.Tensor], guidance: float) -> torch.Tensor:
        """DDIM (eta 0) down the timesteps ts (decreasing, ending at 0) from x_{ts[0]}: x (N, C, H, W) -> x_0."""
        for t_now, t_next in zip(ts[:-1], ts[1:]):
            t = torch.full((len(x),), t_now, device=x.device, dtype=torch.long)
            eps = self.eps(x, t, y, guidance)
            a, a_next = self.alpha_bar[t_now], self.alpha_bar[t_next]
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # consistent with the clipped x0
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps  # DDIM, eta = 0
        return x

    def _invert(self, x: torch.Tensor, ts: List[int], y: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM inversion up the timesteps ts (increasing, from 0) with y's conditional eps
        (guidance 1): x_0 (N, C, H, W) -> x_{ts[-1]}; no clipping (x_0 is the data, not an estimate)."""
        for t_now, t_next in zip(ts[:-1], ts[1:]):
            t = torch.full((len(x),), t_now, device=x.device, dtype=torch.long)
            eps = self.eps(x, t, y, 1.0)
            a, a_next = self.alpha_bar[t_now], self.alpha_bar[t_next]
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x

    @torch.no_grad()
    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, steps: Optional[int] = None,
                guidance: Optional[float] = None) -> torch.Tensor:
        steps, guidance = steps or self.steps, self.guidance if guidance is None else guidance
        x = z.view(len(z), *self.shape)
        ts = torch.linspace(self.timesteps, 0, steps + 1).round().long().tolist()  # T ... 0, evenly spaced
        return self._ddim(x, ts, y, guidance).clamp(-1, 1)

    @torch.no_grad()
    def edit(self, x0: torch.Tensor, y_src: torch.Tensor, y_tgt: torch.Tensor, strength: torch.Tensor,
             noise: torch.Tensor, *, invert: bool = False, steps: Optional[int] = None,
             guidance: Optional[float] = None) -> torch.Tensor:
        """SDEdit (Meng et al. 2022): x0 (N, C, H, W) in [-1, 1] of classes y_src taken to t0 = round(s T) and
        denoised by k = max(1, round(s steps)) DDIM steps (ts = linspace(t0, 0, k + 1), at most t0 of them) with
        guidance toward y_tgt -> (N, C, H, W) in [-1, 1]. Strengths s (N,) may differ per image.

        x_t0 is the forward process with `noise` (N, C*H*W); or, with `invert`, the deterministic DDIM inversion
        of x0 up the same grid with y_src's conditional eps (noise unused). s = 0 (or t0 = 0) returns x0 itself.
        At t0 = T, x_T is the noise itself: noise sampling, G(noise, y_tgt) exactly (alpha_bar_T is only the
        schedule's clipping residue, ~1e-6, yet the first DDIM step divides by its root and would magnify it).
        """
        steps, guidance = steps or self.steps, self.guidance if guidance is None else guidance
        n = len(x0)
        s_all = torch.as_tensor(strength, dtype=torch.float32).flatten().cpu().expand(n)
        noise = noise.reshape(n, *self.shape).to(x0.dtype)
        out = x0.clone()
        for s in sorted(set(s_all.tolist())):  # one chain per distinct strength, written back in place
            idx = (s_all == s).nonzero().flatten().to(x0.device)
            t0 = int(round(s * self.timesteps))
            k = min(max(1, int(round(s * steps))), t0)  # no more steps than timesteps: no repeated t = 0
            if t0 == 0:
                continue  # strength 0: the source, untouched
            ts = torch.linspace(t0, 0, k + 1).round().long().tolist()  # t0 ... 0; the noise sampler's grid at s = 1
            x, y = x0[idx], y_tgt[idx]
            if invert:
                x = self._invert(x, ts[::-1], y_src[idx])
            elif t0 == self.timesteps:
                x = noise[idx]
            else:
                x = q_sample(x, torch.full((len(x),), t0, device=x.device), noise[idx], self.alpha_bar)
            out[idx] = self._ddim(x, ts, y, guidance).clamp(-1, 1)
        return out


# ----------------------------------------------------------------------------------------------------
# The family: its config, defaults, builder and training loop.


class DiffusionConfig(GeneratorConfig):
    """diffusion's keys (the sampler's steps and guidance scale are sample.steps and sample.guidance)."""

    name: Literal["diffusion"] = "diffusion"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    preset: Literal["tiny", "small", "cifar"] = "small"
    """The U-Net's size: tiny (tests), small (a CPU) or cifar (Ho et al.'s CIFAR-10 network)"""
    timesteps: Int = 1000
    """T of the training chain"""
    prediction: Literal["eps", "v"] = "eps"
    """What the network predicts: eps (the noise) or v"""
    label_dropout: Float = 0.1
    """Share of training labels replaced by "no class" (classifier-free guidance)"""
    dropout: Float = 0.0
    """Dropout in the U-Net's residual blocks"""

    def check(self) -> None:
        super().check()
        need(10 <= self.timesteps <= 10_000, "timesteps", f"must be between 10 and 10000, got {self.timesteps}")
        need(0 <= self.label_dropout < 1, "label_dropout", f"must be in [0, 1), got {self.label_dropout}")
        need(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


def diffusion_defaults(g: object, resolution: Optional[int]) -> Dict[str, object]:
    return {"batch_size": 64, "lr": 0.0005, "betas": [0.9, 0.999], "ema_kimg": 10.0}


def diffusion_kwargs(g: DiffusionConfig, resolution: int, channels: int, num_classes: int) -> Dict[str, object]:
    p = PRESETS[g.preset]
    return {"resolution": resolution, "channels": channels, "num_classes": num_classes, "width": p.width,
            "mults": list(p.mults), "blocks": p.blocks, "attention": list(p.attention), "dropout": g.dropout,
            "timesteps": g.timesteps, "prediction": g.prediction}


def diffusion_loss(sampler: DiffusionSampler, x0: torch.Tensor, y: torch.Tensor, label_dropout: float,
                   gen: torch.Generator) -> torch.Tensor:
    """The DDPM objective: t uniform in 1..T, x_t from the closed form, MSE to eps (or v); labels dropped to the
    null class with probability label_dropout. Under torchrun x0 is a slice: each draw is the global batch's, sliced."""
    n = len(x0)
    t = distributed.draw(lambda m: torch.randint(1, sampler.timesteps + 1, (m,), generator=gen), n).to(x0.device)
    noise = distributed.draw(lambda m: torch.randn((m,) + x0.shape[1:], generator=gen), n).to(x0.device)
    drop = distributed.draw(lambda m: torch.rand(m, generator=gen) < label_dropout, n).to(x0.device)
    y = torch.where(drop, torch.full_like(y, sampler.num_classes), y)
    x_t = q_sample(x0, t, noise, sampler.alpha_bar)
    target = noise if sampler.prediction == "eps" else v_target(x0, noise, sampler.alpha_bar[t].view(-1, 1, 1, 1))
    return F.mse_loss(sampler.net(x_t, t, y).float(), target)


def train_diffusion(nets: Any, g: DiffusionConfig, **common: Any) -> Dict[str, Any]:
    sampler: DiffusionSampler = nets.G

    def loss(model: DiffusionSampler, x: torch.Tensor, y: torch.Tensor, cur_nimg: int, gen: torch.Generator) -> tuple:
        value = diffusion_loss(model, x, y, g.label_dropout, gen)
        return value, {"loss/diffusion": value}

    common.pop("channels_last", None)
    return train_likelihood(sampler, trained=sampler.net, loss=loss, **common)


@register_gan("diffusion", config=DiffusionConfig, defaults=diffusion_defaults, kwargs=diffusion_kwargs,
              trainer=train_diffusion, guidance=True, edit=True, ddp=True,
              sample_defaults={"steps": SAMPLE_STEPS, "guidance": GUIDANCE})
def build_diffusion(*, resolution: int, channels: int, num_classes: int, width: int = 24, mults: Sequence[int] = (1, 2, 2),
                    blocks: int = 1, attention: Sequence[int] = (), dropout: float = 0.0, timesteps: int = 1000,
                    prediction: str = "eps", **_: object) -> GanNets:
    """Class-conditional DDPM (cosine schedule, eps or v) with a small U-Net, classifier-free guidance, DDIM sampling."""
    net = UNet(channels, num_classes, width=width, mults=tuple(mults), blocks=blocks, attention=tuple(attention),
               dropout=dropout).to(memory_format=torch.channels_last)
    sampler = DiffusionSampler(net, (channels, resolution, resolution), timesteps, prediction, steps=SAMPLE_STEPS,
                               guidance=GUIDANCE)
    return GanNets(G=sampler, D=None)
