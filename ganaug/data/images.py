"""The one image representation: uint8 tensors (N, C, H, W) in [0, 255], and the only two conversions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import List, Optional

import torch


@dataclass
class ImageSet:
    """Images of one source, loaded once."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: List[str]
    ids: List[str]  # a stable name per image: a file path relative to the root, or a row number
    partition: Optional[List[str]] = None  # "train" / "test" where the source has an official test set
    notes: List[str] = field(default_factory=list)  # things the user should hear (skipped files, conversions)
    skipped: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.dim() == 4, (self.images.dtype, self.images.shape)
        assert self.labels.dtype == torch.int64 and len(self.labels) == len(self.images) == len(self.ids)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]: what every network sees, real or synthetic."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}; convert with to_uint8 first")
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (a generator's tanh output) -> uint8 [0, 255], rounded and clamped."""
    if not images.is_floating_point():
        raise TypeError(f"expected float images in [-1, 1], got {images.dtype}")
    return images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def image_hashes(images: torch.Tensor) -> List[str]:
    """A content hash per image (shape and bytes), for manifests."""
    out = []
    for img in images:
        h = hashlib.sha1(str(tuple(img.shape)).encode())
        h.update(img.contiguous().numpy().tobytes())
        out.append(h.hexdigest()[:16])
    return out


def conform(images: torch.Tensor, resolution: Optional[int], channels: Optional[int]) -> torch.Tensor:
    """Resize square uint8 images to `resolution` (antialiased) and convert to `channels`."""
    if channels is not None and images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        else:
            from torchvision.transforms.v2 import functional as TF  # here: most loads convert nothing

            images = TF.rgb_to_grayscale(images, num_output_channels=1)
    if resolution is not None and tuple(images.shape[-2:]) != (resolution, resolution):
        from torchvision.transforms.v2 import functional as TF

        images = TF.resize(images, [resolution, resolution], antialias=True)
    return images.contiguous()
