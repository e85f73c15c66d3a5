"""An official snapshot's G_ema, loaded with the checkout's legacy.py, behind ganaug's generator interface."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import CheckpointError
from .dataset import official_resolution
from .env import OFFICIAL_URL, PathLike, check_repo


def _import_legacy(repo: Path) -> Any:
    """The official legacy module, importing the checkout (put first on sys.path) once per process."""
    loaded = sys.modules.get("legacy")
    if loaded is not None and not _same_file(getattr(loaded, "__file__", None), repo / "legacy.py"):
        raise CheckpointError(f"another copy of the official code ('{Path(loaded.__file__).parent}') is already "
                              f"imported in this process, not '{repo}'; run ganaug again in a new process")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        import legacy  # type: ignore[import-not-found]
    except Exception as e:
        raise CheckpointError(f"the official code in '{repo}' cannot be imported ({type(e).__name__}: "
                              f"{str(e)[:120]}); check the checkout and its requirements ({OFFICIAL_URL})") from None
    return legacy


def _same_file(a: Optional[str], b: Path) -> bool:
    try:
        return a is not None and os.path.samefile(a, b)
    except OSError:
        return False


class OfficialGenerator(nn.Module):
    """An official G_ema behind ganaug's generator interface: G(z, y, truncation_psi) -> [-1, 1] images.

    Images come at the data's side and channels (scaled down, antialiased, from the power of two the official
    network runs at). Truncation pulls w toward the mean w of the sample's class (from `w_avg_samples` latents
    per class, computed once), not the official tracked mean of all classes. Noise is constant
    (noise_mode='const'); the official fp16 layers run in fp32 off CUDA.
    """

    def __init__(self, G: nn.Module, *, resolution: int, channels: int, num_classes: int, w_avg_samples: int = 2000):
        super().__init__()
        self.G = G.eval().requires_grad_(False)
        self.z_dim = int(G.z_dim)
        self.c_dim = int(G.c_dim)
        self.conditional = self.c_dim > 0
        self.resolution, self.channels, self.num_classes = int(resolution), int(channels), int(num_classes)
        self.w_avg_samples = int(w_avg_samples)
        self._w_avg: Optional[torch.Tensor] = None  # (classes, w_dim)

    def train(self, mode: bool = True) -> "OfficialGenerator":
        super().train(mode)
        self.G.eval()  # in training mode the official mapping network would move its tracked w_avg
        return self

    def _c(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        if not self.conditional:
            return torch.zeros(n, 0, device=device)
        if y is None:
            raise ValueError("this generator is conditional: pass class labels y")
        return F.one_hot(y.to(device).long(), self.c_dim).float()

    @torch.no_grad()
    def class_w_avg(self, device: torch.device) -> torch.Tensor:
        """The mean w per class (one row when unconditional), from a fixed set of latents."""
        if self._w_avg is None:
            gen = torch.Generator().manual_seed(0)
            means = []
            for cls in range(self.c_dim if self.conditional else 1):
                z = torch.randn(self.w_avg_samples, self.z_dim, generator=gen)
                ws = []
                for zb in z.split(500):
                    y = torch.full((len(zb),), cls, dtype=torch.int64)
                    ws.append(self.G.mapping(zb.to(device), self._c(y, len(zb), device), truncation_psi=1)[:, 0])
                means.append(torch.cat(ws).float().mean(0))
            self._w_avg = torch.stack(means)
        return self._w_avg.to(device)

    @torch.no_grad()
    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None, truncation_psi: float = 1.0) -> torch.Tensor:
        device = z.device
        ws = self.G.mapping(z, self._c(y, len(z), device), truncation_psi=1)  # (N, num_ws, w_dim)
        if truncation_psi != 1:
            idx = y.to(device).long() if self.conditional and y is not None else torch.zeros(len(z), dtype=torch.long,
                                                                                                device=device)
            w_avg = self.class_w_avg(device)[idx].unsqueeze(1)  # (N, 1, w_dim)
            ws = w_avg + truncation_psi * (ws - w_avg)
        img = self.G.synthesis(ws, noise_mode="const", force_fp32=device.type != "cuda").float()
        if img.shape[-1] != self.resolution:
            img = F.interpolate(img, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False,
                                antialias=True)
        return img.clamp(-1, 1)


def load_official_generator(pkl_path: PathLike, repo: PathLike, *, resolution: int, channels: int,
                            num_classes: int) -> OfficialGenerator:
    """G_ema of an official snapshot, on the CPU, read with the checkout's legacy.load_network_pkl.

    The pickle runs code from the checkout (and holds some of its own): load only snapshots you made.
    """
    pkl = Path(pkl_path)
    if not pkl.is_file():
        raise CheckpointError(f"no official network snapshot at '{pkl}'; train one with `ganaug train-gan -c CONFIG`")
    root = check_repo(repo, where=f"the official code for '{pkl}' ('repo' in its checkpoint)")
    legacy = _import_legacy(root)
    try:
        with open(pkl, "rb") as f:
            data = legacy.load_network_pkl(f)
        G = data["G_ema"]
    except Exception as e:
        raise CheckpointError(f"'{pkl}' cannot be read with the official code in '{root}' ({type(e).__name__}: "
                              f"{str(e)[:120]}); it may be truncated, or not a stylegan2-ada-pytorch snapshot") from None
    G = G.cpu().float()
    if int(G.img_channels) != channels:
        raise CheckpointError(f"'{pkl}' makes {G.img_channels}-channel images but the data has {channels}; "
                              "train the GAN again on this data")
    if int(G.img_resolution) != official_resolution(resolution):
        raise CheckpointError(f"'{pkl}' makes {G.img_resolution}px images, not the {official_resolution(resolution)}px "
                              f"that {resolution}px data trains at; train the GAN again on this data")
    if 0 < int(G.c_dim) < num_classes:
        raise CheckpointError(f"'{pkl}' knows {G.c_dim} classes but the data has {num_classes}; "
                              "train the GAN again on this split")
    return OfficialGenerator(G, resolution=resolution, channels=channels, num_classes=num_classes)
