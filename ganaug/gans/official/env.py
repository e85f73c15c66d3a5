"""The checkout of the official code and the machine it trains on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Union

import torch

from ...errors import ConfigError, StageError

PathLike = Union[str, Path]
OFFICIAL_URL = "https://github.com/NVlabs/stylegan2-ada-pytorch"
TRAINING_PACKAGES = ("click", "requests", "psutil", "scipy")  # what the official train.py imports beyond torch


def check_repo(repo: Optional[PathLike], where: str = "config key 'gan.repo'") -> Path:
    """The checkout as an absolute path; a ConfigError when it is not a folder with train.py and legacy.py."""
    if not repo:
        raise ConfigError(f"{where} is not set; clone {OFFICIAL_URL} and name the folder there, "
                          "or use gan.name: stylegan2 (ganaug's native code)")
    p = Path(repo).expanduser()
    if not p.is_dir():
        raise ConfigError(f"{where} is '{repo}', which is not a folder; clone {OFFICIAL_URL} there, "
                          "or use gan.name: stylegan2 (ganaug's native code)")
    missing = [f for f in ("train.py", "legacy.py") if not (p / f).is_file()]
    if missing:
        raise ConfigError(f"{where} is '{repo}', which has no {' and no '.join(missing)}; name a checkout of "
                          f"{OFFICIAL_URL}, or use gan.name: stylegan2 (ganaug's native code)")
    return p.resolve()


def require_training_env(gpus: int = 1) -> None:
    """CUDA GPUs enough for `gpus`, and the Python packages the official train.py imports."""
    if not torch.cuda.is_available():
        raise ConfigError("config key 'gan.impl' is 'official', but no CUDA device is available: the official code "
                          "trains only on CUDA GPUs; use gan.name: stylegan2 (native, runs on CPU and GPU) here, "
                          "or train on a machine with an NVIDIA GPU")
    n = torch.cuda.device_count()
    if n < gpus:
        raise ConfigError(f"config key 'gan.gpus' is {gpus}, but {n} CUDA device{'s are' if n != 1 else ' is'} "
                          f"visible; set gan.gpus to {n} or fewer")
    missing = [m for m in TRAINING_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        raise StageError(f"the official train.py needs the Python package{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)}; pip install {' '.join(missing)} (and ninja for its CUDA kernels)")
