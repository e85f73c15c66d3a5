"""GAN families, registered by name. Knows nothing of the CLI or run folders."""

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


def train_generator(nets: GanNets, g: Any, **common: Any) -> Dict[str, Any]:
    """Train any family with its own loop (`trainer` meta), or the adversarial one; `common` as train_gan takes it.

    The result's `trained_hashes` is the content hash of every image handed to the loop, hashed here, where
    training starts (the protocol audit compares it with the split's parts).
    """
    from ..data.images import image_hashes

    trained_hashes = image_hashes(common["images"])
    trainer = GANS.meta(g.name).get("trainer")
    if trainer is not None:
        return {**trainer(nets, g, **common), "trained_hashes": trained_hashes}
    from .training import augment_settings, train_gan

    result = train_gan(nets, r1_gamma=getattr(g, "r1_gamma", None) or 0.0,
                       r1_interval=getattr(g, "r1_interval", None) or 16, augment=augment_settings(g), **common)
    return {**result, "trained_hashes": trained_hashes}


def gan_kwargs(gan_cfg: Any, resolution: int, channels: int, num_classes: int) -> Dict[str, Any]:
    """The builder arguments a config implies; stored in checkpoints to rebuild without the config."""
    return GANS.meta(gan_cfg.name)["kwargs"](gan_cfg, resolution, channels, num_classes)


from . import dcgan, diffusion, stylegan2, vae  # noqa: E402,F401  (fill the registry)
