"""The GAN registry: register a family's builder by name, build one, and the arguments a config implies."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch.nn as nn

from ..registry import Registry

GANS = Registry("GAN")


class GanNets(NamedTuple):
    G: nn.Module  # G(z, y) -> images in [-1, 1]; has .z_dim and .conditional
    D: Optional[nn.Module]  # D(x, y) -> logits (N,); None for the families without one (vae, diffusion)
    per_class: bool = False  # G and D hold one unconditional network per class


def register_gan(name: str, **meta: Any) -> Callable:
    """Register a builder `fn(*, resolution, channels, num_classes, **kwargs) -> GanNets`.

    Meta: `config`, the family's schema (a GeneratorConfig dataclass: its keys, and only its keys, are valid
    under gan: for it); `defaults(cfg, resolution)`, the keys it fills when left out; `kwargs(cfg, resolution,
    channels, num_classes)`, the builder's arguments (stored in checkpoints to rebuild without the config);
    `trainer`, the training loop (`gan`, the adversarial one, unless said); `ddp`, True where that loop trains
    one model on several processes under torchrun (`ganaug.distributed`).
    """
    return GANS.register(name, **meta)


def get_gan(name: str, **kwargs: Any) -> GanNets:
    return GANS.get(name, "config key 'gan.name'")(**kwargs)


def list_gans() -> List[str]:
    return GANS.names()


def cpu_bf16(gan_cfg: Any) -> bool:
    """Whether `amp: auto` trains this generator in bfloat16 on CPUs with native support (families registered with
    cpu_bf16=True, measured to gain from it: the DCGANs); the others stay in float32 there."""
    return bool(GANS.meta(gan_cfg.name).get("cpu_bf16")) and getattr(gan_cfg, "impl", None) != "official"


def gan_kwargs(gan_cfg: Any, resolution: int, channels: int, num_classes: int) -> Dict[str, Any]:
    """The builder arguments a config implies; stored in checkpoints to rebuild without the config."""
    return GANS.meta(gan_cfg.name)["kwargs"](gan_cfg, resolution, channels, num_classes)
