"""Classifiers, registered by name, and their training loop. Knows nothing of the CLI or run folders."""

from __future__ import annotations

from typing import Any, Callable, List

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


from . import models  # noqa: E402,F401  (fills the registry)
