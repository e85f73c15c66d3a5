"""Classic augmentation, drawn per sample on a uint8 batch.

torchvision's v2 transforms applied to a batch tensor draw one set of parameters for the whole batch.
This draws them per sample with the same distributions as `RandomHorizontalFlip`, `RandomAffine` and
`ColorJitter` and resamples exactly as torchvision's tensor kernel does (nearest neighbour, zero fill,
the same grid), but for the whole batch in one `grid_sample` call. The test suite checks it against
`torchvision.transforms.v2.functional.affine` image by image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config.sections import AugmentConfig


@dataclass
class AffineParams:
    angle: torch.Tensor  # (N,) degrees, counter-clockwise
    translate: torch.Tensor  # (N, 2) whole pixels (tx, ty)
    scale: torch.Tensor  # (N,)


def inverse_affine_matrices(p: AffineParams) -> torch.Tensor:
    """torchvision's `_get_inverse_affine_matrix` (center 0, no shear) for a batch: (N, 2, 3)."""
    rot = p.angle.double() * (math.pi / 180.0)
    cos, sin = torch.cos(rot), torch.sin(rot)
    s = p.scale.double()
    a, b, c, d = cos, -sin, sin, cos  # the rotation with no shear
    m00, m01, m10, m11 = d / s, -b / s, -c / s, a / s
    tx, ty = p.translate[:, 0].double(), p.translate[:, 1].double()
    m02 = m00 * -tx + m01 * -ty
    m12 = m10 * -tx + m11 * -ty
    return torch.stack([torch.stack([m00, m01, m02], 1), torch.stack([m10, m11, m12], 1)], 1)


def affine(images: torch.Tensor, p: AffineParams) -> torch.Tensor:
    """Apply per-sample affine transforms to uint8 (N, C, H, W) images, as torchvision would one by one."""
    n, ch, h, w = images.shape
    theta = inverse_affine_matrices(p).float()  # (N, 2, 3), pixel units about the centre
    # The output pixel grid in centred pixel coordinates, as torchvision's _affine_grid builds it.
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h).unsqueeze(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h])  # (N, 3, 2)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(rescaled).view(n, h, w, 2)
    out = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.to(torch.uint8)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


class ClassicAugment:
    """Per-sample flips (where classes allow them), rotation, shift, zoom, brightness and contrast."""

    def __init__(self, cfg: AugmentConfig, hflip: bool):
        self.cfg, self.hflip = cfg, hflip

    def sample_affine(self, n: int, h: int, w: int, gen: torch.Generator) -> AffineParams:
        c = self.cfg
        angle = _uniform(n, -c.degrees, c.degrees, gen)
        # Like RandomAffine: a uniform shift up to translate * size, rounded to whole pixels.
        tx = torch.round(_uniform(n, -c.translate * w, c.translate * w, gen))
        ty = torch.round(_uniform(n, -c.translate * h, c.translate * h, gen))
        scale = _uniform(n, c.scale[0], c.scale[1], gen)
        return AffineParams(angle=angle, translate=torch.stack([tx, ty], 1), scale=scale)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C, H, W), each image with its own random parameters."""
        assert images.dtype == torch.uint8
        n, ch, h, w = images.shape
        c = self.cfg
        x = images
        if self.hflip:
            flip = torch.rand(n, generator=gen) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        if c.degrees > 0 or c.translate > 0 or c.scale != [1.0, 1.0]:
            x = affine(x, self.sample_affine(n, h, w, gen))
        if c.brightness > 0 or c.contrast > 0:
            xf = x.float()
            if c.brightness > 0:
                factor = _uniform(n, 1 - c.brightness, 1 + c.brightness, gen).view(n, 1, 1, 1)
                xf = (xf * factor).clamp_(0, 255).floor_()
            if c.contrast > 0:
                factor = _uniform(n, 1 - c.contrast, 1 + c.contrast, gen).view(n, 1, 1, 1)
                gray = xf if ch == 1 else (0.2989 * xf[:, 0:1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:3]).floor_()
                mean = gray.mean(dim=(1, 2, 3), keepdim=True)
                xf = (xf * factor + mean * (1 - factor)).clamp_(0, 255).floor_()
            x = xf.to(torch.uint8)
        return x


# ----------------------------------------------------------------------------------------------------
# torchvision's learned and random policies, and label mixing (MixUp, CutMix), drawn per sample.

POLICIES = ("trivialaugment", "randaugment", "autoaugment")


def _forked_seed(gen: torch.Generator) -> int:
    """A seed drawn from the run's generator, for code that draws from torch's global RNG (torchvision's
    policies): run under a fork of that RNG, it is reproducible and resumable with the run."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


class PolicyAugment:
    """torchvision.transforms.v2's TrivialAugmentWide, RandAugment or AutoAugment (ImageNet policy), applied to
    each image on its own (on a batch tensor v2 would draw one operation for the whole batch)."""

    def __init__(self, kind: str):
        from torchvision.transforms import v2

        if kind not in POLICIES:
            raise ValueError(f"unknown policy {kind!r}; one of {', '.join(POLICIES)}")
        self.kind = kind
        self.policy = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
                       "autoaugment": v2.AutoAugment}[kind]()

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, C, H, W), each image with its own draw."""
        assert images.dtype == torch.uint8
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_forked_seed(gen))
            return torch.stack([self.policy(img) for img in images])


class LabelMix:
    """MixUp (Zhang et al. 2018) or CutMix (Yun et al. 2019) as torchvision.transforms.v2 defines them (each image
    mixed with the next in the batch, lambda ~ Beta(alpha, alpha), CutMix's box from lambda), but with a lambda
    (and a box) per sample rather than one per batch. Labels are (N,) long or already soft (N, C) float targets,
    mixed as given. Returns float images and soft labels."""

    def __init__(self, kind: str, alpha: float, num_classes: int):
        if kind not in ("mixup", "cutmix"):
            raise ValueError(f"unknown label mixing {kind!r}; mixup or cutmix")
        self.kind, self.alpha, self.num_classes = kind, alpha, num_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        import numpy as np

        n, _, h, w = x.shape
        rng = np.random.default_rng(_forked_seed(gen))
        lam = torch.from_numpy(rng.beta(self.alpha, self.alpha, size=n)).float()
        onehot = y.float() if y.dim() == 2 else torch.nn.functional.one_hot(y, self.num_classes).float()  # (N, C)
        x2, y2 = x.roll(1, 0), onehot.roll(1, 0)
        if self.kind == "mixup":
            mixed = lam.view(n, 1, 1, 1) * x + (1 - lam.view(n, 1, 1, 1)) * x2
        else:
            # torchvision's CutMix box: centre uniform in the image, sides sqrt(1 - lambda) of the image's.
            cx, cy = torch.from_numpy(rng.uniform(0, w, n)), torch.from_numpy(rng.uniform(0, h, n))
            r = 0.5 * torch.sqrt(1.0 - lam.double())
            x0, x1 = (cx - r * w).clamp(0, w).long(), (cx + r * w).clamp(0, w).long()
            y0, y1 = (cy - r * h).clamp(0, h).long(), (cy + r * h).clamp(0, h).long()
            cols, rows = torch.arange(w).view(1, 1, w), torch.arange(h).view(1, h, 1)
            inside = ((cols >= x0.view(n, 1, 1)) & (cols < x1.view(n, 1, 1))
                      & (rows >= y0.view(n, 1, 1)) & (rows < y1.view(n, 1, 1)))  # (N, H, W)
            mixed = torch.where(inside[:, None], x2, x)
            lam = 1.0 - ((x1 - x0) * (y1 - y0)).float() / (w * h)  # the share the image kept
        target = lam.view(n, 1) * onehot + (1 - lam.view(n, 1)) * y2
        return mixed, target
