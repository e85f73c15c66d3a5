"""Differentiable augmentation of D's inputs: ADA's pipeline, its p controller, and DiffAugment.

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data") passes every
image D sees, real and fake, through operations that each act on a sample with probability p, and
tunes p during training from the overfitting signal r_t = E[sign(D(real))] (`AdaController`).
DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training") is the
simpler alternative: colour jitter, translation and cutout.

`AugmentPipe` follows NVlabs/stylegan2-ada-pytorch `training/augment.py`: the same operations, their
distributions and order, one 3x3 geometric matrix and one 4x4 colour matrix per sample, applied with
one resampling and one matrix product. Where it differs:
- Resampling. The official pipe pads by reflection, upsamples 2x with a sym6 wavelet filter, samples
  bilinearly and downsamples with the same filter, which keeps scaling and rotation from aliasing.
  This one samples the image itself bilinearly, `F.grid_sample(padding_mode="reflection")`: plain
  torch on any device with no custom ops, at the price of a little aliasing. A known simplification.
- Reflection mirrors about the outer edge of the border pixels (the border pixel repeats), where the
  official's `F.pad(mode="reflect")` mirrors about their centres; either way no black borders.
- With only the pixel-blitting ops on (x-flip, 90-degree rotations, integer translation: 'blit') the
  lookup is nearest-neighbour, so the result is pixel-exact.
- For 1-channel images the colour matrix acts through its effect on gray, as the official does:
  brightness, contrast and luma flip work; hue and saturation are identities (gray has neither).
- Image-space filtering, noise and cutout (the f, n and c of the official 'bgcfnc') are left out.
- `AdaController` clamps p to [0, 1]; the official clamps it at 0 only.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

BLIT_OPS: Tuple[str, ...] = ("xflip", "rotate90", "xint")
GEOM_OPS: Tuple[str, ...] = ("scale", "rotate", "aniso", "xfrac")
COLOR_OPS: Tuple[str, ...] = ("brightness", "contrast", "lumaflip", "hue", "saturation")
AUGMENT_OPS: Tuple[str, ...] = BLIT_OPS + GEOM_OPS + COLOR_OPS  # AugmentPipe's operations, in the order applied

# The official train.py's augpipe_specs up to 'bgc': op -> probability multiplier.
AUGPIPES: Dict[str, Dict[str, float]] = {
    "blit": {op: 1.0 for op in BLIT_OPS},
    "geom": {op: 1.0 for op in GEOM_OPS},
    "color": {op: 1.0 for op in COLOR_OPS},
    "bg": {op: 1.0 for op in BLIT_OPS + GEOM_OPS},
    "bgc": {op: 1.0 for op in AUGMENT_OPS},
}

DIFFAUGMENT_OPS: Tuple[str, ...] = ("color", "translation", "cutout")

_LUMA = 1.0 / math.sqrt(3.0)  # each entry of the unit gray axis (1, 1, 1) / sqrt(3)


def _matrix(rows: Sequence[Sequence[object]], ref: torch.Tensor) -> torch.Tensor:
    """Per-sample matrices (N, R, C) from rows of entries that are (N,) tensors like `ref` or numbers."""
    entries = [e if torch.is_tensor(e) else torch.full_like(ref, float(e)) for row in rows for e in row]
    return torch.stack(entries, dim=-1).view(ref.shape[0], len(rows), len(rows[0]))


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


def _translate3d(t: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def _scale3d(s: torch.Tensor) -> torch.Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def _rotate_about_gray(theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues' rotation by theta about the gray axis, as (N, 4, 4) colour matrices."""
    v = _LUMA
    c, s = torch.cos(theta), torch.sin(theta)
    on, off = v * v * (1 - c) + c, v * v * (1 - c)  # diagonal, and the symmetric part off it
    return _matrix([[on, off - v * s, off + v * s, 0],
                    [off + v * s, on, off - v * s, 0],
                    [off - v * s, off + v * s, on, 0],
                    [0, 0, 0, 1]], theta)


class AugmentPipe(nn.Module):
    """ADA's pipeline: each op applied per sample with probability p (times the op's weight).

    Args:
        xflip ... saturation: probability multipliers of the ops (0: off, 1: as in the paper).
        *_std, *_max: the ops' strengths, as in the official AugmentPipe.
        p: the overall probability; a buffer, so it is saved with the state_dict.
    """

    def __init__(self, xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
                 scale_std: float = 0.2, rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0, hue: float = 0, saturation: float = 0,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1, saturation_std: float = 1,
                 p: float = 0.0):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"AugmentPipe p must be a probability in [0, 1], got {p}")
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        # Pixel blitting.
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)  # range of integer translation, a fraction of the image size
        # General geometric transformations.
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std = float(scale_std)  # log2 standard deviation of isotropic scaling
        self.rotate_max = float(rotate_max)  # range of rotation, 1 = full circle
        self.aniso_std = float(aniso_std)  # log2 standard deviation of anisotropic scaling
        self.xfrac_std = float(xfrac_std)  # standard deviation of fractional translation, a fraction of the size
        # Colour transformations.
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std = float(brightness_std)  # standard deviation of the added brightness
        self.contrast_std = float(contrast_std)  # log2 standard deviation of contrast
        self.hue_max = float(hue_max)  # range of hue rotation, 1 = full circle
        self.saturation_std = float(saturation_std)  # log2 standard deviation of saturation

    def ops(self) -> List[str]:
        """The names of the enabled ops, in the order they are applied."""
        return [op for op in AUGMENT_OPS if getattr(self, op) > 0]

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4f}, ops={','.join(self.ops()) or 'none'}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float images -> augmented images of the same shape and dtype."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe takes (N, C, H, W) images, got shape {tuple(images.shape)}")
        p = float(self.p)
        if p <= 0 or not self.ops():
            return images
        # Matrices and sampling in float32 (float64 for float64 input) whatever autocast would pick.
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        with torch.autocast(images.device.type, enabled=False):
            x = self._geometric(images.to(dtype), p)
            x = self._color(x, p)
        return x.to(images.dtype)

    def _chosen(self, weight: float, p: float, x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which samples an op with this weight acts on."""
        return torch.rand(x.shape[0], device=x.device, dtype=x.dtype) < weight * p

    def _geometric(self, x: torch.Tensor, p: float) -> torch.Tensor:
        n, _, h, w = x.shape
        kw = dict(device=x.device, dtype=x.dtype)
        eye = torch.eye(3, **kw).expand(n, 3, 3)
        # G_inv maps an output pixel to the input pixel it reads, in pixels about the image centre;
        # each op multiplies its inverse on the right, so the ops act on the image in the order listed.
        G_inv = eye

        if self.xflip > 0:
            i = torch.floor(torch.rand(n, **kw) * 2)  # flip or not, as the official draws it
            i = torch.where(self._chosen(self.xflip, p, x), i, 0)
            G_inv = G_inv @ _scale2d(1 - 2 * i, torch.ones_like(i))
        if self.rotate90 > 0:
            k = torch.floor(torch.rand(n, **kw) * 4).long()
            k = torch.where(self._chosen(self.rotate90, p, x), k, 0)
            # Exact table values, not cos(k * pi / 2), so a quarter turn moves whole pixels.
            cos, sin = torch.tensor([1, 0, -1, 0], **kw)[k], torch.tensor([0, 1, 0, -1], **kw)[k]
            G_inv = G_inv @ _rotate2d(cos, -sin)
        if self.xint > 0:
            t = (torch.rand(n, 2, **kw) * 2 - 1) * self.xint_max
            t = torch.where(self._chosen(self.xint, p, x)[:, None], t, 0)
            G_inv = G_inv @ _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))

        if self.scale > 0:
            s = torch.exp2(torch.randn(n, **kw) * self.scale_std)
            s = torch.where(self._chosen(self.scale, p, x), s, 1)
            G_inv = G_inv @ _scale2d(1 / s, 1 / s)
        # Rotation happens before and after anisotropic scaling, each with p_rot, so that
        # P(pre or post) = rotate * p.
        p_rot = 1 - math.sqrt(min(max(1 - self.rotate * p, 0.0), 1.0))
        if self.rotate > 0:
            theta = (torch.rand(n, **kw) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(self._chosen(1.0, p_rot, x), theta, 0)
            G_inv = G_inv @ _rotate2d(torch.cos(theta), -torch.sin(theta))
        if self.aniso > 0:
            s = torch.exp2(torch.randn(n, **kw) * self.aniso_std)
            s = torch.where(self._chosen(self.aniso, p, x), s, 1)
            G_inv = G_inv @ _scale2d(1 / s, s)
        if self.rotate > 0:
            theta = (torch.rand(n, **kw) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(self._chosen(1.0, p_rot, x), theta, 0)
            G_inv = G_inv @ _rotate2d(torch.cos(theta), -torch.sin(theta))
        if self.xfrac > 0:
            t = torch.randn(n, 2, **kw) * self.xfrac_std
            t = torch.where(self._chosen(self.xfrac, p, x)[:, None], t, 0)
            G_inv = G_inv @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)

        if G_inv is eye:
            return x
        # grid_sample's coordinates with align_corners=False put pixel centres at 2 * (centred pixel) / size.
        to_grid = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], **kw))
        from_grid = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], **kw))
        theta = (to_grid @ G_inv @ from_grid)[:, :2, :]  # (N, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
        blit_only = not any(getattr(self, op) > 0 for op in GEOM_OPS)
        out = F.grid_sample(x, grid, mode="nearest" if blit_only else "bilinear", padding_mode="reflection",
                            align_corners=False)
        # Samples no op chose keep their pixels bit for bit (bilinear weights at pixel centres are only ~exact).
        identity = (G_inv == eye).flatten(1).all(dim=1)
        return torch.where(identity[:, None, None, None], x, out)

    def _color(self, x: torch.Tensor, p: float) -> torch.Tensor:
        n, c = x.shape[:2]
        kw = dict(device=x.device, dtype=x.dtype)
        eye = torch.eye(4, **kw).expand(n, 4, 4)
        gray = torch.tensor([_LUMA, _LUMA, _LUMA, 0.0], **kw)
        gray_proj = torch.outer(gray, gray)  # projection onto the gray axis
        # C maps a homogeneous colour (r, g, b, 1) to its augmented colour; ops multiply on the left.
        C = eye

        if self.brightness > 0:
            b = torch.randn(n, **kw) * self.brightness_std
            b = torch.where(self._chosen(self.brightness, p, x), b, 0)
            C = _translate3d(b) @ C
        if self.contrast > 0:
            s = torch.exp2(torch.randn(n, **kw) * self.contrast_std)
            s = torch.where(self._chosen(self.contrast, p, x), s, 1)
            C = _scale3d(s) @ C
        if self.lumaflip > 0:
            i = torch.floor(torch.rand(n, **kw) * 2)  # flip or not, as the official draws it
            i = torch.where(self._chosen(self.lumaflip, p, x), i, 0)
            C = (eye - 2 * gray_proj * i[:, None, None]) @ C  # Householder reflection of the gray axis
        if self.hue > 0 and c > 1:
            theta = (torch.rand(n, **kw) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(self._chosen(self.hue, p, x), theta, 0)
            C = _rotate_about_gray(theta) @ C
        if self.saturation > 0 and c > 1:
            s = torch.exp2(torch.randn(n, **kw) * self.saturation_std)
            s = torch.where(self._chosen(self.saturation, p, x), s, 1)
            # Scale the part off the gray axis by s; written as I + (s - 1)(I - P) so s = 1 gives exactly I.
            C = (eye + (s - 1)[:, None, None] * (eye - gray_proj)) @ C

        if C is eye:
            return x
        if c == 3:
            out = (C[:, :3, :3] @ x.flatten(2) + C[:, :3, 3:]).view_as(x)  # (N, 3, H*W) -> (N, 3, H, W)
        elif c == 1:
            # A gray value g is the colour (g, g, g); apply C to it and read back the mean of the three channels.
            gain = C[:, :3, :3].sum(dim=(1, 2)) / 3
            offset = C[:, :3, 3].mean(dim=1)
            out = x * gain[:, None, None, None] + offset[:, None, None, None]
        else:
            raise ValueError(f"AugmentPipe's colour ops need 1- or 3-channel images, got {c} channels")
        identity = (C == eye).flatten(1).all(dim=1)
        return torch.where(identity[:, None, None, None], x, out)


def _diff_chosen(x: torch.Tensor, p: float) -> torch.Tensor:
    """(N, 1, 1, 1) bool: which samples a DiffAugment op acts on."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p


def _diff_brightness(x: torch.Tensor, p: float) -> torch.Tensor:
    b = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5
    return torch.where(_diff_chosen(x, p), x + b, x)


def _diff_saturation(x: torch.Tensor, p: float) -> torch.Tensor:
    s = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * 2
    mean = x.mean(dim=1, keepdim=True)  # gray images equal their mean: saturation leaves them be
    return torch.where(_diff_chosen(x, p), (x - mean) * s + mean, x)


def _diff_contrast(x: torch.Tensor, p: float) -> torch.Tensor:
    s = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(_diff_chosen(x, p), (x - mean) * s + mean, x)


def _diff_translation(x: torch.Tensor, p: float, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, up to `ratio` of its size, filling with zeros."""
    n, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    chosen = _diff_chosen(x, p).view(n, 1)
    ty = torch.where(chosen, torch.randint(-max_y, max_y + 1, (n, 1), device=x.device), 0)
    tx = torch.where(chosen, torch.randint(-max_x, max_x + 1, (n, 1), device=x.device), 0)
    # Rows and columns to read from the image padded by one zero pixel; clamping lands on the zeros.
    rows = (torch.arange(h, device=x.device) + ty + 1).clamp(0, h + 1)  # (N, H)
    cols = (torch.arange(w, device=x.device) + tx + 1).clamp(0, w + 1)  # (N, W)
    padded = F.pad(x, [1, 1, 1, 1])
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def _diff_cutout(x: torch.Tensor, p: float, ratio: float = 0.5) -> torch.Tensor:
    """Zero a rectangle `ratio` of the size, centred anywhere in the image (it may overhang the border)."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_y % 2), (n, 1), device=x.device) - size_y // 2
    left = torch.randint(0, w + (1 - size_x % 2), (n, 1), device=x.device) - size_x // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= top) & (ys < top + size_y)  # (N, H)
    in_x = (xs >= left) & (xs < left + size_x)  # (N, W)
    hole = in_y[:, :, None] & in_x[:, None, :] & _diff_chosen(x, p).view(n, 1, 1)  # (N, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


class DiffAugment(nn.Module):
    """DiffAugment (Zhao et al. 2020): colour, translation and cutout, as in the paper's code.

    Args:
        policy: comma-separated ops from DIFFAUGMENT_OPS, applied in the order given.
        p: probability that each op (each of brightness, saturation, contrast for 'color') acts on a
            sample; 1 is the paper's setting. A buffer, so it is saved with the state_dict.
    """

    def __init__(self, policy: str = "color,translation,cutout", p: float = 1.0):
        super().__init__()
        ops = tuple(op.strip() for op in policy.split(",") if op.strip())
        bad = [op for op in ops if op not in DIFFAUGMENT_OPS]
        if bad or not ops:
            raise ValueError(f"DiffAugment policy must list some of {', '.join(DIFFAUGMENT_OPS)} separated by "
                             f"commas, got {policy!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"DiffAugment p must be a probability in [0, 1], got {p}")
        self.policy = ops
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))

    def ops(self) -> List[str]:
        return list(self.policy)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)}, p={float(self.p):.4f}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float images -> augmented images of the same shape and dtype."""
        if images.ndim != 4:
            raise ValueError(f"DiffAugment takes (N, C, H, W) images, got shape {tuple(images.shape)}")
        p = float(self.p)
        if p <= 0:
            return images
        x = images
        for op in self.policy:
            if op == "color":
                x = _diff_contrast(_diff_saturation(_diff_brightness(x, p), p), p)
            elif op == "translation":
                x = _diff_translation(x, p)
            else:
                x = _diff_cutout(x, p)
        return x.contiguous()


class AdaController:
    """Adjusts pipe.p every `interval` minibatches from r_t = E[sign(D(real))] toward `target`.

    Args:
        pipe: the module whose `p` buffer is tuned (an AugmentPipe).
        target: the r_t to hold; above it D is overconfident on reals, so p rises.
        interval: minibatches between adjustments; r_t averages the logits accumulated over them.
        kimg: thousands of images over which p can move by 1.
    """

    def __init__(self, pipe: nn.Module, *, target: float = 0.6, interval: int = 4, kimg: float = 500.0):
        if interval < 1 or kimg <= 0:
            raise ValueError(f"AdaController needs interval >= 1 and kimg > 0, got interval={interval}, kimg={kimg}")
        self.pipe, self.target, self.interval, self.kimg = pipe, float(target), int(interval), float(kimg)
        self.batch_idx = 0  # update() calls so far
        self.last_r_t: Optional[float] = None
        self._sign_sum: object = 0.0  # a device tensor once logits arrive: no host sync per step
        self._sign_count = 0

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record D's logits on (augmented) reals; called once per D step."""
        self._sign_sum = self._sign_sum + real_logits.detach().float().sign().sum()
        self._sign_count += real_logits.numel()

    @torch.no_grad()
    def update(self, batch_size: int) -> Optional[float]:
        """Count a minibatch; every `interval`-th call move p and return r_t (else None).

        With nothing accumulated since the last adjustment there is no r_t: p stays and None is returned.
        """
        self.batch_idx += 1
        if self.batch_idx % self.interval != 0 or self._sign_count == 0:
            return None
        r_t = float(self._sign_sum) / self._sign_count
        self._sign_sum, self._sign_count = 0.0, 0
        # p can go from 0 to 1 in `kimg` thousand images when r_t stays on one side of the target.
        step = batch_size * self.interval / (self.kimg * 1000)
        adjust = (r_t > self.target) - (r_t < self.target)  # sign(r_t - target)
        self.pipe.p.copy_((self.pipe.p + adjust * step).clamp(0, 1))
        self.last_r_t = r_t
        return r_t

    def state_dict(self) -> dict:
        """The counters (p itself is the pipe's buffer and lives in its state_dict)."""
        return {"batch_idx": self.batch_idx, "sign_sum": float(self._sign_sum), "sign_count": self._sign_count,
                "last_r_t": self.last_r_t}

    def load_state_dict(self, state: dict) -> None:
        self.batch_idx = int(state["batch_idx"])
        self._sign_sum, self._sign_count = float(state["sign_sum"]), int(state["sign_count"])
        self.last_r_t = state.get("last_r_t")


def build_augment(kind: Optional[str], *, p: Optional[float] = None, augpipe: Optional[str] = None,
                  diffaugment: Optional[str] = None) -> Optional[nn.Module]:
    """None for kind None/'none'; AugmentPipe(**AUGPIPES[augpipe], p=p or 0) for 'ada'/'fixed'; DiffAugment for 'diffaugment'.

    Args:
        augpipe: for 'ada'/'fixed', a key of AUGPIPES; None means 'bgc'.
        diffaugment: for 'diffaugment', the policy; None means all of DIFFAUGMENT_OPS.
        p: for 'diffaugment', the per-op probability when given (default 1).
    """
    if kind is None or kind == "none":
        return None
    if kind in ("ada", "fixed"):
        name = augpipe or "bgc"
        if name not in AUGPIPES:
            raise ValueError(f"augpipe must be one of {', '.join(AUGPIPES)}, got {name!r}")
        return AugmentPipe(**AUGPIPES[name], p=p or 0.0)
    if kind == "diffaugment":
        return DiffAugment(diffaugment or ",".join(DIFFAUGMENT_OPS), p=1.0 if p is None else p)
    raise ValueError(f"augment kind must be one of none, ada, fixed, diffaugment, got {kind!r}")
