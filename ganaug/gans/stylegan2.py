"""StyleGAN2 in plain PyTorch (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
with the limited-data settings of "Training Generative Adversarial Networks with Limited Data").

Generator: a mapping network (z, and a class embedding when conditional, each normalised, through
`mapping_layers` equalized-lr layers at 0.01 learning-rate multiplier) to w; a learned 4x4 constant;
per resolution two modulated 3x3 convolutions with weight demodulation, per-pixel noise and a toRGB
whose outputs are summed over resolutions (the "skip" generator). Discriminator: fromRGB at the top
resolution, residual blocks that halve the size, minibatch standard deviation, and, when conditional, the
projection of a mapped class embedding onto the last features. Every weight uses the equalized learning
rate (stored N(0, 1), scaled by 1/sqrt(fan_in) at run time).

Differences from NVlabs/stylegan2-ada-pytorch, on purpose:
- The modulated convolution scales the activations instead of building one weight per sample (grouped
  convolution): the same maths, 25-40% faster on CPUs.
- Resampling uses bilinear up-sampling and antialiased bilinear down-sampling, which are the [1, 3, 3, 1]
  filter of the official upfirdn2d with replicated instead of zero borders; no custom CUDA ops, no fp16
  layers, no output clamping.
- No path-length regularisation (the cifar preset turns it off too); R1 is applied lazily by the
  training loop, as the official code does. D is always residual (the official cifar preset uses the
  plain 'orig' D).

Under torchrun (`ganaug.distributed`) each process holds a contiguous slice of the global batch, and every
layer that couples samples or draws per sample sees the global batch, so N processes train what one does, to
float rounding: the noise inputs and style mixing's second latents are drawn for the global batch and sliced
(`distributed.draw`; the mixing coin and cutoff are one draw per batch, alike on every rank), the mapping's
running mean of w is the global batch's mean, and the minibatch standard deviation gathers the global batch
(with its gradient) so that its groups are one process's: sample i of N groups with i + N/G, i + 2N/G, ...,
which spans the processes. (Grouping within a process instead would be cheaper but another model: its groups
would be other samples.)

Images of any side from 16 to 256 are handled at the next power of two: D scales its input up to it and
G's output is scaled down to the data's side, so the rest of ganaug sees the data's own size.
"""

from __future__ import annotations

import math
from typing import Dict, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import distributed
from ..errors import ConfigError
from .base import GanNets, register_gan
from .schema import Float, GanConfig, Int, Invalid, need

# ----------------------------------------------------------------------------------------------------
# Presets. `auto` and `cifar` are the official train.py cfg_specs for one GPU; `small` is sized for a
# CPU (32 channels at 32 px, 128 from 8 px down; a 28 px conditional MNIST model trains at ~65 images/s on
# two cores without augmentation), `tiny` for tests.

PRESETS = ("auto", "cifar", "small", "tiny")


class StyleGAN2Config(GanConfig):
    """stylegan2's keys; those left out come from the preset (the saved config.yaml shows them)."""

    name: Literal["stylegan2"] = "stylegan2"
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    preset: Optional[Literal["auto", "cifar", "small", "tiny"]] = None
    """The network and training numbers: auto or cifar (the official presets' numbers for one GPU), small (a CPU),
    tiny (tests); fills every stylegan2 key left out [small; auto with impl: official]"""
    channel_base: Optional[Int] = None
    """Channels at resolution r are min(channel_base // r, channel_max)"""
    channel_max: Optional[Int] = None
    """The most channels at any resolution (see channel_base)"""
    w_dim: Optional[Int] = None
    """Intermediate latent size"""
    mapping_layers: Optional[Int] = None
    """Depth of the mapping network"""
    mbstd_group: Optional[Int] = None
    """Minibatch standard deviation group size"""
    r1_gamma: Optional[Float] = None
    """R1 weight (lazy, every r1_interval minibatches)"""
    r1_interval: Optional[Int] = None
    """Minibatches between lazy R1 steps [16]"""
    style_mixing: Optional[Float] = None
    """Probability of mixing two latents in a training batch"""

    def check(self) -> None:
        super().check()
        for k in ("channel_base", "channel_max", "w_dim", "mapping_layers", "mbstd_group", "r1_interval", "gpus", "snap"):
            v = getattr(self, k, None)
            need(v is None or v >= 1, k, f"must be 1 or more, got {v}")
        need(self.r1_gamma is None or self.r1_gamma >= 0, "r1_gamma", f"must be 0 (off) or more, got {self.r1_gamma}")
        need(self.style_mixing is None or 0 <= self.style_mixing <= 1, "style_mixing",
             f"must be a probability in [0, 1], got {self.style_mixing}")


class StyleGAN2AdaConfig(StyleGAN2Config):
    """stylegan2-ada: ADA on by default; `impl: official` runs NVlabs' train.py from a checkout instead."""

    name: Literal["stylegan2-ada"] = "stylegan2-ada"  # type: ignore[assignment]
    """The generator family (`ganaug list`): cgan (conditional DCGAN), dcgan, stylegan2 (native), stylegan2-ada
    (native with ADA on, or impl: official), vae or diffusion [cgan]"""
    impl: Optional[Literal["native", "official"]] = None
    """native (ganaug's own code) or official (runs NVlabs/stylegan2-ada-pytorch's train.py) [native]"""
    repo: Optional[str] = None
    """impl official: the checkout of NVlabs/stylegan2-ada-pytorch whose train.py runs"""
    gpus: Optional[Int] = None
    """impl official: CUDA GPUs for train.py [1]"""
    snap: Optional[Int] = None
    """impl official: ticks between snapshots [50]"""

    def check(self) -> None:
        super().check()
        if self.impl == "official":
            need(bool(self.repo), "repo", "must name a checkout of NVlabs/stylegan2-ada-pytorch for impl: official; or use "
                 "gan.name: stylegan2 (ganaug's native code, runs on CPU and GPU)")
            need(self.augment != "diffaugment", "augment", "diffaugment is not in the official code; use ada, fixed or "
                 "none with impl: official, or the native stylegan2")
            need(self.preset in (None, "auto", "cifar"), "preset", f"'{self.preset}' is ganaug's own; the official code "
                 "has auto and cifar (or use the native stylegan2)")
        elif any(getattr(self, k) is not None for k in ("gpus", "snap", "repo")):
            raise Invalid("", "config keys '{key}.repo', '{key}.gpus' and '{key}.snap' are for impl: official; remove "
                          "them or set {key}.impl: official", whole=True)


def stylegan2_kwargs(g: StyleGAN2Config, resolution: int, channels: int, num_classes: int) -> Dict[str, object]:
    return {"resolution": resolution, "channels": channels, "num_classes": num_classes, "z_dim": g.z_dim,
            **{k: getattr(g, k) for k in ("w_dim", "channel_base", "channel_max", "mapping_layers", "mbstd_group",
                                         "style_mixing")}}


def pow2_resolution(resolution: int) -> int:
    """The power of two the networks run at: the data's side rounded up."""
    return 2 ** math.ceil(math.log2(resolution))


def preset_values(preset: str, resolution: int) -> Dict[str, object]:
    """Every number a preset fixes, for images of `resolution` pixels (rounded up to a power of two)."""
    res = pow2_resolution(resolution)
    if preset == "cifar":
        # cfg_specs['cifar']: mb 64, mbstd 32, fmaps 1, lrate 0.0025, gamma 0.01, ema 500, map 2, no mixing.
        v = dict(batch_size=64, mbstd_group=32, channel_base=32768, channel_max=512, z_dim=512, w_dim=512,
                 lr=0.0025, r1_gamma=0.01, ema_kimg=500.0, mapping_layers=2, style_mixing=0.0)
    elif preset == "auto":
        # cfg_specs['auto'] with gpus=1: batch from the resolution, gamma = 0.0002 res^2 / batch.
        mb = max(min(min(4096 // res, 32), 64), 1)
        v = dict(batch_size=mb, mbstd_group=min(mb, 4), channel_base=16384, channel_max=512, z_dim=512, w_dim=512,
                 lr=0.0025, r1_gamma=0.0002 * res ** 2 / mb, ema_kimg=mb * 10 / 32, mapping_layers=2,
                 style_mixing=0.9)
    elif preset == "small":
        mb = 32
        v = dict(batch_size=mb, mbstd_group=4, channel_base=1024, channel_max=128, z_dim=128, w_dim=128,
                 lr=0.0025, r1_gamma=0.0002 * res ** 2 / mb, ema_kimg=mb * 10 / 32, mapping_layers=2,
                 style_mixing=0.9)
    elif preset == "tiny":
        mb = 8
        v = dict(batch_size=mb, mbstd_group=4, channel_base=256, channel_max=16, z_dim=16, w_dim=16,
                 lr=0.0025, r1_gamma=0.0002 * res ** 2 / mb, ema_kimg=1.0, mapping_layers=1, style_mixing=0.9)
    else:
        raise ConfigError(f"config key 'gan.preset' must be one of {', '.join(PRESETS)}, got {preset!r}")
    v.update(betas=[0.0, 0.99], r1_interval=16)
    return v


def stylegan2_defaults(gan_cfg: object, resolution: Optional[int]) -> Dict[str, object]:
    """The config keys a stylegan2 leaves out, from its preset (`small` when none is named)."""
    if resolution is None:
        raise ConfigError("config key 'data.resolution' must be set for a stylegan2 on this source")
    if not 16 <= resolution <= 256:
        raise ConfigError(f"config key 'data.resolution' is {resolution}; stylegan2 works from 16 to 256 pixels "
                          "(set data.resolution, e.g. 32)")
    official = getattr(gan_cfg, "impl", None) == "official"
    preset = getattr(gan_cfg, "preset", None) or ("auto" if official else "small")
    values: Dict[str, object] = {"preset": preset, **preset_values(preset, resolution)}
    if getattr(gan_cfg, "name", "") == "stylegan2-ada":
        values["augment"] = "ada"
        if official:
            values.update(snap=50, gpus=1)
            if preset in ("auto", "cifar"):
                # The official train.py has no option for these: its --cfg fixes them, so a config may not differ.
                for k in OFFICIAL_FIXED:
                    mine = getattr(gan_cfg, k, None)
                    if mine is not None and mine != values[k]:
                        raise ConfigError(
                            f"config key 'gan.{k}' is {mine}, but the official train.py takes it from --cfg={preset} "
                            f"({values[k]}); remove it, or use the native stylegan2 to change it")
    return values


OFFICIAL_FIXED = ("z_dim", "w_dim", "channel_base", "channel_max", "lr", "betas", "ema_kimg", "mapping_layers",
                  "mbstd_group", "style_mixing", "r1_interval")


# ----------------------------------------------------------------------------------------------------
# Layers with the equalized learning rate.


class FullyConnected(nn.Module):
    """y = x W^T / sqrt(in) * lr_mul + b * lr_mul, optionally leaky ReLU times sqrt(2)."""

    def __init__(self, in_features: int, out_features: int, *, lr_mul: float = 1.0, bias_init: float = 0.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x


class Conv2d(nn.Module):
    """A k x k convolution with equalized lr; `down` halves the size after the convolution (resnet D)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: bool = True, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.activation, self.down, self.padding = activation, down, kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down:
            x = downsample(x)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x


def upsample(x: torch.Tensor) -> torch.Tensor:
    # (N, C, H, W) -> (N, C, 2H, 2W): bilinear = the [1, 3, 3, 1] filter after zero insertion.
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    # (N, C, H, W) -> (N, C, H/2, W/2): antialiased bilinear = [1, 3, 3, 1] blur, then every second pixel.
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
    """z (N, z_dim) [+ class] -> w (N, w_dim); tracks the mean of w for truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, num_layers: int, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_classes, self.w_avg_beta = z_dim, w_dim, num_classes, w_avg_beta
        embed = w_dim if num_classes > 0 else 0
        if num_classes > 0:
            self.embed = FullyConnected(num_classes, embed)
        dims = [z_dim + embed] + [w_dim] * num_layers
        self.layers = nn.Sequential(*[FullyConnected(dims[i], dims[i + 1], lr_mul=0.01, activation=True)
                                      for i in range(num_layers)])
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: Optional[torch.Tensor], y: Optional[torch.Tensor], update_w_avg: bool = True) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            assert z is not None
            parts.append(normalize_2nd_moment(z.float()))  # (N, z_dim)
        if self.num_classes > 0:
            assert y is not None, "a conditional network needs labels"
            c = F.one_hot(y, self.num_classes).float()
            parts.append(normalize_2nd_moment(self.embed(c)))  # (N, w_dim)
        w = self.layers(torch.cat(parts, dim=1))  # (N, w_dim)
        if self.w_avg_beta is not None and self.training and update_w_avg:  # the global batch's mean w
            self.w_avg.copy_(distributed.batch_mean(w.detach()).lerp(self.w_avg, self.w_avg_beta))
        return w


class ModulatedConv2d(nn.Module):
    """A 3x3 (or 1x1) convolution whose input channels are scaled by a style from w, then demodulated.

    Non-fused form: x * s -> conv with the shared weight -> * d, where d = 1 / sqrt(sum_(i,k) (w s)^2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, *, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)  # w -> style s, starting at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (N, Cin)
        weight = self.weight * self.weight_gain  # (Cout, Cin, k, k)
        if self.up:
            x = upsample(x)
        x = x * styles[:, :, None, None].to(x.dtype)
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)  # (N, Cout, H, W)
        if self.demodulate:
            # sum over (Cin, k, k) of (weight * s)^2 = s^2 @ sum_k weight^2
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (N, Cout)
            x = x * dcoefs[:, :, None, None].to(x.dtype)
        return x


class SynthesisLayer(nn.Module):
    """Modulated conv, per-pixel noise with a learned strength, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.resolution = resolution
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            r = self.resolution  # (N, 1, r, r), this slice's rows of the global batch's noise
            noise = distributed.draw(lambda m: torch.randn(m, 1, r, r, device=x.device, dtype=x.dtype), len(x))
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        x = x + self.bias[None, :, None, None].to(x.dtype)
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation: features -> image channels."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None].to(x.dtype)


class SynthesisBlock(nn.Module):
    """One resolution: (in) x r/2 x r/2 -> (out) x r x r, and the running image (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
            self.convs = nn.ModuleList([SynthesisLayer(out_channels, out_channels, w_dim, 4)])
        else:
            self.convs = nn.ModuleList([SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True),
                                        SynthesisLayer(out_channels, out_channels, w_dim, resolution)])
        self.torgb = ToRGB(out_channels, img_channels, w_dim)
        self.num_conv = len(self.convs)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str) -> tuple:
        # ws: (N, num_conv + 1, w_dim), the last one for toRGB
        if self.resolution == 4:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)  # (out) x 4 x 4
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i], noise_mode)  # (out) x r x r
        y = self.torgb(x, ws[:, self.num_conv])  # (img_channels) x r x r
        img = y if img is None else upsample(img) + y
        return x, img


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


class Generator(nn.Module):
    """G(z, y) -> images (N, C, R, R) in about [-1, 1] at the data's side R."""

    def __init__(self, *, resolution: int, channels: int, num_classes: int, z_dim: int, w_dim: int,
                 channel_base: int, channel_max: int, mapping_layers: int, style_mixing: float = 0.0):
        super().__init__()
        self.resolution, self.z_dim, self.w_dim, self.num_classes = resolution, z_dim, w_dim, num_classes
        self.conditional = num_classes > 0
        self.style_mixing = style_mixing
        self.net_resolution = pow2_resolution(resolution)
        levels = int(math.log2(self.net_resolution))
        res_list = [2 ** i for i in range(2, levels + 1)]  # 4, 8, ..., R'
        blocks = []
        for r in res_list:
            c_in = channels_at(r // 2, channel_base, channel_max) if r > 4 else 0
            blocks.append(SynthesisBlock(c_in, channels_at(r, channel_base, channel_max), w_dim, r, channels))
        self.blocks = nn.ModuleList(blocks)
        # One w per conv, plus the last toRGB's: a block's toRGB shares its index with the next block's first conv.
        self.num_ws = sum(b.num_conv for b in blocks) + 1
        self.mapping = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers)
        self._class_w_avg: Dict[int, torch.Tensor] = {}

    def map(self, z: torch.Tensor, y: Optional[torch.Tensor], truncation_psi: float = 1.0) -> torch.Tensor:
        """z, y -> ws (N, num_ws, w_dim): style mixing while training, truncation toward the class's mean w."""
        w = self.mapping(z, y)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if self.training and self.style_mixing > 0 and torch.rand(()) < self.style_mixing:
            cutoff = int(torch.randint(1, self.num_ws, ()))
            z2 = distributed.draw(lambda m: torch.randn(m, *z.shape[1:], device=z.device, dtype=z.dtype), len(z))
            ws[:, cutoff:] = self.mapping(z2, y, update_w_avg=False)[:, None]
        if truncation_psi != 1:
            ws = self.w_center(y, len(z))[:, None].lerp(ws, truncation_psi)
        return ws

    @torch.no_grad()
    def w_center(self, y: Optional[torch.Tensor], n: int) -> torch.Tensor:
        """The point truncation pulls toward: each class's mean w (estimated once from 2,000 latents), or the
        running mean of w for an unconditional G."""
        if not self.conditional or y is None:
            return self.mapping.w_avg[None].expand(n, -1)
        device = self.mapping.w_avg.device
        for c in torch.unique(y).tolist():
            if c not in self._class_w_avg:
                gen = torch.Generator().manual_seed(1234 + c)
                z = torch.randn(2000, self.z_dim, generator=gen).to(device)
                self._class_w_avg[c] = self.mapping(z, torch.full((2000,), c, device=device),
                                                    update_w_avg=False).mean(dim=0)
        return torch.stack([self._class_w_avg[c] for c in y.tolist()])

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        i = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, i:i + block.num_conv + 1], noise_mode)
            i += block.num_conv
        assert img is not None
        if self.net_resolution != self.resolution:
            # (C) x R' x R' -> (C) x R x R, the data's own side
            img = F.interpolate(img, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                                antialias=True)
        return img

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, truncation_psi: float = 1.0,
                noise_mode: Optional[str] = None) -> torch.Tensor:
        ws = self.map(z, y if self.conditional else None, truncation_psi)
        return self.synthesis(ws, noise_mode or ("random" if self.training else "const"))

    def train(self, mode: bool = True) -> "Generator":
        self._class_w_avg = {}  # class means are re-estimated after any training
        return super().train(mode)


# ----------------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """(in) x r x r -> (out) x r/2 x r/2: two 3x3 convs, the second halving, plus a 1x1 residual path."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = Conv2d(in_channels, in_channels, 3)
        self.conv1 = Conv2d(in_channels, out_channels, 3, down=True)
        self.skip = Conv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x)
        x = self.conv1(self.conv0(x))
        return (x + y) * math.sqrt(0.5)


class MinibatchStd(nn.Module):
    """Appends the standard deviation over groups of `group_size` samples as one more channel.

    Training under torchrun, the groups are the global batch's (see the module's docstring): the slices are
    gathered, with their gradient, and this slice's rows of the result kept.
    """

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        several = self.training and distributed.active()
        y = self.std(distributed.gather_grad(x) if several else x)  # (N, 1, H, W) over the (global) batch
        return torch.cat([x, (distributed.shard(y) if several else y).to(x.dtype)], dim=1)

    def std(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        G = min(self.group_size, N)
        if N % G:
            G = math.gcd(N, G)
        y = x.float().reshape(G, -1, C, H, W)  # (G, n, C, H, W)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # (n, C, H, W)
        return y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(G, 1, H, W)  # (N, 1, H, W)


class Discriminator(nn.Module):
    """D(x, y) -> logits (N,). Residual, with minibatch stddev and class projection when conditional."""

    def __init__(self, *, resolution: int, channels: int, num_classes: int, channel_base: int, channel_max: int,
                 mbstd_group: int):
        super().__init__()
        self.resolution, self.num_classes = resolution, num_classes
        self.net_resolution = pow2_resolution(resolution)
        levels = int(math.log2(self.net_resolution))
        ch = {2 ** i: channels_at(2 ** i, channel_base, channel_max) for i in range(2, levels + 1)}
        self.fromrgb = Conv2d(channels, ch[self.net_resolution], 1)  # (C) -> (ch) x R' x R'
        self.blocks = nn.Sequential(*[DiscriminatorBlock(ch[2 ** i], ch[2 ** (i - 1)]) for i in range(levels, 2, -1)])
        c4 = ch[4]
        self.cmap_dim = c4 if num_classes > 0 else 0
        if num_classes > 0:
            # The official D's label mapping keeps MappingNetwork's default depth (8), whatever G's is.
            self.mapping = MappingNetwork(0, self.cmap_dim, num_classes, 8, w_avg_beta=None)
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = Conv2d(c4 + 1, c4, 3)  # (c4 + 1) x 4 x 4 -> (c4) x 4 x 4
        self.fc = FullyConnected(c4 * 16, c4, activation=True)
        self.out = FullyConnected(c4, max(self.cmap_dim, 1))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.shape[-1] != self.net_resolution:
            # (C) x R x R -> (C) x R' x R': the data's side up to the networks' power of two
            x = F.interpolate(x, size=(self.net_resolution, self.net_resolution), mode="bilinear",
                              align_corners=False)
        h = self.fromrgb(x)
        h = self.blocks(h)  # (c4) x 4 x 4
        h = self.conv(self.mbstd(h))
        h = self.out(self.fc(h.flatten(1)))  # (N, cmap_dim or 1)
        if self.cmap_dim > 0:
            assert y is not None, "a conditional discriminator needs labels"
            cmap = self.mapping(None, y)  # (N, cmap_dim)
            h = (h * cmap.to(h.dtype)).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return h.flatten().float()


# ----------------------------------------------------------------------------------------------------
# Registration.


def _build(*, resolution: int, channels: int, num_classes: int, conditional: bool = True, z_dim: int, w_dim: int,
           channel_base: int, channel_max: int, mapping_layers: int, mbstd_group: int, style_mixing: float = 0.0,
           **_: object) -> GanNets:
    k = num_classes if conditional else 0
    G = Generator(resolution=resolution, channels=channels, num_classes=k, z_dim=z_dim, w_dim=w_dim,
                  channel_base=channel_base, channel_max=channel_max, mapping_layers=mapping_layers,
                  style_mixing=style_mixing)
    D = Discriminator(resolution=resolution, channels=channels, num_classes=k, channel_base=channel_base,
                      channel_max=channel_max, mbstd_group=mbstd_group)
    return GanNets(G=G, D=D)


@register_gan("stylegan2", config=StyleGAN2Config, defaults=stylegan2_defaults, kwargs=stylegan2_kwargs,
              truncation=True, ddp=True)
def build_stylegan2(**kwargs: object) -> GanNets:
    """StyleGAN2 in plain PyTorch, class-conditional, on CPU or GPU; presets auto, cifar, small, tiny."""
    return _build(**kwargs)  # type: ignore[arg-type]


@register_gan("stylegan2-ada", config=StyleGAN2AdaConfig, defaults=stylegan2_defaults, kwargs=stylegan2_kwargs,
              truncation=True, ddp=True)
def build_stylegan2_ada(**kwargs: object) -> GanNets:
    """StyleGAN2 with ADA on by default; `impl: official` runs NVlabs' train.py from `repo` on CUDA instead."""
    return _build(**kwargs)  # type: ignore[arg-type]
