"""GAN families, registered by name. Knows nothing of the CLI or run folders."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Set, Tuple

import torch.nn as nn

from ..registry import Registry

GANS = Registry("GAN")


class GanNets(NamedTuple):
    G: nn.Module  # G(z, y) -> images in [-1, 1]; has .z_dim and .conditional
    D: nn.Module  # D(x, y) -> logits (N,)
    per_class: bool = False  # G and D hold one unconditional network per class


def register_gan(name: str, **meta: Any) -> Callable:
    """Register a builder `fn(*, resolution, channels, num_classes, **kwargs) -> GanNets`.

    Meta `keys`: the gan config keys only this family reads (beside the shared ones every family reads);
    a key another family owns cannot change this family's result, so no fingerprint of it counts it.
    """
    return GANS.register(name, **meta)


def family_keys(name: str) -> Tuple[str, ...]:
    return tuple(GANS.meta(name).get("keys", ()))


def owned_keys() -> Set[str]:
    """Every gan config key that some family owns (the rest are shared by all)."""
    return {k for n in GANS.names() for k in family_keys(n)}


def get_gan(name: str, **kwargs: Any) -> GanNets:
    return GANS.get(name, "config key 'gan.name'")(**kwargs)


def list_gans() -> List[str]:
    return GANS.names()


def gan_kwargs(gan_cfg: Any, resolution: int, channels: int, num_classes: int) -> Dict[str, Any]:
    """The builder arguments a config implies; stored in checkpoints to rebuild without the config."""
    kwargs = {"resolution": resolution, "channels": channels, "num_classes": num_classes, "z_dim": gan_cfg.z_dim}
    if "channel_base" in family_keys(gan_cfg.name):  # stylegan2
        kwargs.update({k: getattr(gan_cfg, k) for k in ("w_dim", "channel_base", "channel_max", "mapping_layers",
                                                        "mbstd_group", "style_mixing")})
    else:
        kwargs.update(width=gan_cfg.width, per_class=gan_cfg.per_class, d_cond=gan_cfg.d_cond)
    return kwargs


from . import dcgan, stylegan2  # noqa: E402,F401  (fill the registry)
