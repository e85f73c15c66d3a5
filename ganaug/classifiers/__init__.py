"""Classifiers, registered by name, and their training loop. Knows nothing of the CLI or run folders."""

from . import models  # noqa: F401  (fills the registry)
from .base import CLASSIFIERS, get_classifier, imagenet_kwargs, list_classifiers, register_classifier, weights_identity

__all__ = ["CLASSIFIERS", "get_classifier", "imagenet_kwargs", "list_classifiers", "register_classifier", "weights_identity"]
