"""The classifier registry: register a builder by name, build one, and what a fingerprint says of its ImageNet weights."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import torch.nn as nn

from ..registry import Registry

CLASSIFIERS = Registry("classifier")


def register_classifier(name: str, **meta: Any) -> Callable:
    """Register a builder `fn(*, resolution, channels, num_classes, width) -> nn.Module` (logits out).

    Meta `ignores`: classifier config keys this network does not read (no fingerprint counts them).
    """
    return CLASSIFIERS.register(name, **meta)


def get_classifier(name: str, **kwargs: Any) -> nn.Module:
    return CLASSIFIERS.get(name, "config key 'classifier.name'")(**kwargs)


def list_classifiers() -> List[str]:
    return CLASSIFIERS.names()


def imagenet_kwargs(cfg: Any) -> Dict[str, Any]:
    """The builder arguments of a classifier started from ImageNet weights (none for one trained from scratch)."""
    if not (cfg.pretrained or cfg.weights is not None or CLASSIFIERS.meta(cfg.name).get("needs_imagenet")):
        return {}
    return {"imagenet": True, "input_size": cfg.input_size or 224}


def weights_identity(cfg: Any) -> Dict[str, Any]:
    """For fingerprints: the content hash (or name) of the ImageNet weights a run starts from."""
    from .pretrained import identity

    return identity(cfg.name, cfg.pretrained, cfg.weights)
