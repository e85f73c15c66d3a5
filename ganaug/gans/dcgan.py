"""DCGAN (Radford et al. 2016), unconditional or one per class, and a conditional DCGAN.

Sizes follow pytorch/examples' dcgan: transposed 4x4 stride-2 convolutions in G, strided 4x4
convolutions in D, BatchNorm everywhere but D's first layer and the image layers. Any resolution
works: G starts from s0 x s0 (s0 in 2..7) and doubles k times to s0 * 2^k >= resolution, then
center-crops (28 -> 7x7 start, 32 -> 4x4 start).

The cGAN's D takes the label as one-hot maps by default: at 100 MNIST images per class (100 epochs,
width 32, one seed) its fakes scored 82.6% classification accuracy against 70.3% with projection.
"""

from __future__ import annotations

import math
from typing import Dict, List, Literal, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import GanNets, register_gan
from .schema import GanConfig, Int


def plan(resolution: int) -> Tuple[int, int]:
    """(s0, k): the start size and number of doublings with s0 * 2^k >= resolution, s0 <= 7."""
    k = 1
    while math.ceil(resolution / 2**k) > 7:
        k += 1
    return math.ceil(resolution / 2**k), k


def layout(t: torch.Tensor) -> torch.memory_format:
    """The memory format a 4-D tensor lies in: channels_last only where that is not also plain contiguous. Of a
    weight, the format its model was put in (`model.to(memory_format=...)`)."""
    return torch.channels_last if not t.is_contiguous() and t.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format


def flat_linear(linear: nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """`linear(h.flatten(1))` for maps h (N, C, H, W). On channels_last maps, the maps are flattened as they lie in
    memory (a view, not a copy) and the weight's columns put in that order: the same products in another order
    of summation. The backward then hands h's layer a gradient in h's own layout, not the slow path for mixed
    layouts (30x slower for the LeakyReLU before it)."""
    if layout(h) == torch.contiguous_format:
        return linear(h.flatten(1))
    c, hh, ww = h.shape[1:]
    weight = linear.weight.view(-1, c, hh, ww).permute(0, 2, 3, 1).flatten(1)  # (out, H*W*C): h's order
    return F.linear(h.permute(0, 2, 3, 1).flatten(1), weight, linear.bias)  # (N, out)


def _init_weights(m: nn.Module) -> None:
    # DCGAN: N(0, 0.02) weights, BN scales N(1, 0.02).
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (N, z_dim) [+ label embedding] -> images (N, C, R, R) in [-1, 1]."""

    def __init__(self, resolution: int, channels: int, z_dim: int, width: int, num_classes: int = 0):
        super().__init__()
        self.resolution, self.z_dim, self.num_classes = resolution, z_dim, num_classes
        self.conditional = num_classes > 0
        s0, k = plan(resolution)
        self.s0, self.k = s0, k
        chans = [min(width * 2 ** (k - 1 - i), width * 8) for i in range(k)]  # e.g. [128, 64] for k=2
        in_dim = z_dim
        if self.conditional:
            embed_dim = min(z_dim, 64)
            self.embed = nn.Embedding(num_classes, embed_dim)
            in_dim += embed_dim
        # (z_dim [+ embed]) -> (chans[0]) x s0 x s0
        self.fc = nn.Linear(in_dim, chans[0] * s0 * s0, bias=False)
        self.bn0 = nn.BatchNorm2d(chans[0])
        blocks: List[nn.Module] = []
        for i in range(k - 1):
            # (chans[i]) x s x s -> (chans[i+1]) x 2s x 2s
            blocks += [nn.ConvTranspose2d(chans[i], chans[i + 1], 4, 2, 1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(True)]
        # (width) x s0*2^(k-1) -> (channels) x s0*2^k
        blocks += [nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = z
        if self.conditional:
            assert y is not None, "a conditional generator needs labels"
            h = torch.cat([z, self.embed(y)], dim=1)
        h = self.fc(h).view(len(z), -1, self.s0, self.s0)  # (chans[0]) x s0 x s0
        # In the layout of the convolutions that follow (a small copy): the ReLU's backward then gets its gradient
        # in its own layout, not the slow path for mixed layouts.
        h = F.relu(self.bn0(h.contiguous(memory_format=layout(self.blocks[0].weight))))
        x = self.blocks(h)  # (channels) x s0*2^k x s0*2^k
        full = x.shape[-1]
        if full != self.resolution:
            o = (full - self.resolution) // 2
            x = x[..., o:o + self.resolution, o:o + self.resolution]
        return x


class LabelMapsConv(nn.Conv2d):
    """A convolution of the images (N, C, R, R) with the labels' one-hot maps concatenated, (N, C + K, R, R).

    Computed as the sum of its two parts (it is linear): the images' C channels, then the label maps' K channels
    convolved once per class (K inputs, not N) and picked per image. The function of the convolution on the
    concatenation, to float rounding, without building or copying that (N, C + K, R, R) input: on MNIST (C = 1,
    K = 10) the cGAN's training step 1.10-1.18x faster on one thread. Its weight is that convolution's, (out, C + K,
    k, k), so checkpoints are those of an nn.Conv2d on the concatenation.
    """

    def __init__(self, channels: int, num_classes: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__(channels + num_classes, out_channels, kernel_size, stride, padding)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c, k = x.shape[1], self.num_classes
        maps = torch.eye(k, dtype=x.dtype, device=x.device)[:, :, None, None].expand(k, k, *x.shape[-2:])  # (K, K, R, R)
        per_class = F.conv2d(maps.contiguous(memory_format=layout(self.weight)), self.weight[:, c:], None, self.stride,
                             self.padding)  # (K, out, R', R')
        return F.conv2d(x, self.weight[:, :c], self.bias, self.stride, self.padding) + per_class[y]  # (out) x R' x R'


class Discriminator(nn.Module):
    """images (N, C, R, R) [+ labels] -> logits (N,). Labels enter by projection or concatenation."""

    def __init__(self, resolution: int, channels: int, width: int, num_classes: int = 0,
                 d_cond: str = "concat"):
        super().__init__()
        self.num_classes, self.d_cond = num_classes, d_cond
        self.conditional = num_classes > 0
        _, k = plan(resolution)
        self.concat = self.conditional and d_cond == "concat"
        chans = [min(width * 2**i, width * 8) for i in range(k)]  # e.g. [64, 128] for k=2
        # (C [+ K label maps]) x R x R -> (width) x R/2 x R/2; no BN on the first layer
        first = (LabelMapsConv(channels, num_classes, chans[0], 4, 2, 1) if self.concat
                 else nn.Conv2d(channels, chans[0], 4, 2, 1))
        layers: List[nn.Module] = [first, nn.LeakyReLU(0.2, True)]
        size = resolution // 2
        for i in range(k - 1):
            # (chans[i]) x s x s -> (chans[i+1]) x s/2 x s/2
            layers += [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.LeakyReLU(0.2, True)]
            size //= 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1] * size * size, 1)
        if self.conditional and d_cond == "projection":
            # Miyato & Koyama 2018: logit = psi(phi(x)) + <embed(y), sum-pooled phi(x)>
            self.embed = nn.Embedding(num_classes, chans[-1])
        self.apply(_init_weights)
        if self.conditional and d_cond == "projection":
            nn.init.xavier_uniform_(self.embed.weight)  # as in the SNGAN-projection code: N(0, 0.02) learns too slowly

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.conditional:
            assert y is not None, "a conditional discriminator needs labels"
        if self.concat:
            h = self.features[1:](self.features[0](x, y))  # (chans[-1]) x s x s
        else:
            h = self.features(x)  # (chans[-1]) x s x s
        logit = flat_linear(self.out, h).squeeze(1)
        if self.conditional and self.d_cond == "projection":
            logit = logit + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)
        return logit


class PerClass(nn.Module):
    """One unconditional network per class behind a conditional interface: net(x_or_z, y)."""

    def __init__(self, nets: List[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.num_classes = len(nets)
        self.conditional = True
        self.z_dim = getattr(nets[0], "z_dim", None)
        self.resolution = getattr(nets[0], "resolution", None)

    def forward(self, inp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outs: Optional[torch.Tensor] = None
        for c in torch.unique(y).tolist():
            sel = y == c
            o = self.nets[c](inp[sel])
            if outs is None:
                outs = o.new_empty((len(inp),) + tuple(o.shape[1:]))
            outs[sel] = o
        assert outs is not None
        return outs


class DcganConfig(GanConfig):
    """dcgan's keys: pytorch/examples' DCGAN, unconditional, or one per class."""

    name: Literal["dcgan"] = "dcgan"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    width: Int = 64
    """Base channel count (ngf = ndf)"""
    per_class: bool = False
    """dcgan: one unconditional generator and discriminator per class, each trained on that class alone"""


class CganConfig(GanConfig):
    """cgan's keys: the conditional DCGAN."""

    name: Literal["cgan"] = "cgan"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    width: Int = 64
    """Base channel count (ngf = ndf)"""
    d_cond: Literal["concat", "projection"] = "concat"
    """cgan: how D sees the label: one-hot maps (concat) or projection"""


def dcgan_kwargs(g: GanConfig, resolution: int, channels: int, num_classes: int) -> Dict[str, object]:
    return {"resolution": resolution, "channels": channels, "num_classes": num_classes, "z_dim": g.z_dim,
            "width": g.width, "per_class": getattr(g, "per_class", False), "d_cond": getattr(g, "d_cond", "concat")}


def dcgan_defaults(gan_cfg: object, resolution: Optional[int]) -> Dict[str, object]:
    """pytorch/examples' dcgan numbers: Adam(2e-4, betas (0.5, 0.999)), batch 64; plus a G_ema of 10 kimg."""
    return {"batch_size": 64, "z_dim": 64, "lr": 0.0002, "betas": [0.5, 0.999], "ema_kimg": 10.0}


@register_gan("dcgan", config=DcganConfig, per_class=True, defaults=dcgan_defaults, kwargs=dcgan_kwargs, ddp=True,
              cpu_bf16=True)
def build_dcgan(*, resolution: int, channels: int, num_classes: int, z_dim: int = 64, width: int = 64,
                per_class: bool = False, **_: object) -> GanNets:
    """Unconditional DCGAN; `per_class: true` trains one per class (labelled samples)."""
    if per_class:
        Gs = [Generator(resolution, channels, z_dim, width) for _ in range(num_classes)]
        Ds = [Discriminator(resolution, channels, width) for _ in range(num_classes)]
        return GanNets(G=PerClass(Gs), D=PerClass(Ds), per_class=True)
    return GanNets(G=Generator(resolution, channels, z_dim, width), D=Discriminator(resolution, channels, width))


@register_gan("cgan", config=CganConfig, defaults=dcgan_defaults, kwargs=dcgan_kwargs, ddp=True, cpu_bf16=True)
def build_cgan(*, resolution: int, channels: int, num_classes: int, z_dim: int = 64, width: int = 64,
               d_cond: str = "concat", **_: object) -> GanNets:
    """Conditional DCGAN: a label embedding joins z in G; D sees the label by projection or concatenation."""
    G = Generator(resolution, channels, z_dim, width, num_classes=num_classes)
    D = Discriminator(resolution, channels, width, num_classes=num_classes, d_cond=d_cond)
    return GanNets(G=G, D=D)
