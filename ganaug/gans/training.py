"""The GAN training loop: a plain function, shared by every family.

Non-saturating logistic loss (Goodfellow et al. 2014), Adam, a generator moving average (G_ema, as in
StyleGAN2-ADA's training_loop.py), bfloat16 autocast and channels_last where they help.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.utils import save_image
from tqdm.auto import tqdm

from ..data.images import to_float
from ..data.mixing import EpochSampler
from ..utils import Stats, autocast
from . import GanNets


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, y: Optional[torch.Tensor], batch_size: int = 500) -> torch.Tensor:
    """G in eval mode on (z, y) in chunks -> float images in [-1, 1] on the CPU."""
    was_training = G.training
    G.eval()
    out = []
    for i in range(0, len(z), batch_size):
        yb = y[i:i + batch_size] if y is not None else None
        out.append(G(z[i:i + batch_size], yb).float().cpu())
    G.train(was_training)
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """Float [-1, 1] images -> one PNG grid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.add(1).div(2).clamp(0, 1), path, nrow=nrow, padding=1, pad_value=1.0)


def train_gan(
    nets: GanNets,
    *,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    betas: tuple[float, float],
    ema_kimg: float,
    device: torch.device,
    amp_dtype: Optional[torch.dtype],
    channels_last: bool,
    generator: torch.Generator,
    stats: Stats,
    grid_dir: Optional[Path] = None,
    grid_every: int = 10,
    progress: bool = True,
) -> Dict[str, Any]:
    """Train G and D on uint8 `images`; returns the networks, optimizer states and counters.

    A per-class pair (`nets.per_class`) trains each class's G and D on that class's images alone.
    """
    G, D = nets.G.to(device), nets.D.to(device)
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if ema_kimg > 0 else None
    if nets.per_class:
        pairs = [(c, G.nets[c], D.nets[c], G_ema.nets[c] if G_ema is not None else None) for c in range(num_classes)]
    else:
        pairs = [(None, G, D, G_ema)]
    optim: Dict[str, Any] = {}
    counters = {"step": 0, "cur_nimg": 0}
    for cls, g, d, g_ema in pairs:
        if cls is not None:
            sel = labels == cls
            x, y = images[sel], labels[sel]
        else:
            x, y = images, labels
        state = _train_pair(
            g, d, g_ema, x, y, conditional=getattr(G, "conditional", False) and cls is None,
            num_classes=num_classes, epochs=epochs, batch_size=batch_size, lr=lr, betas=betas,
            ema_kimg=ema_kimg, device=device, amp_dtype=amp_dtype, channels_last=channels_last,
            generator=generator, stats=stats, grid_dir=grid_dir, grid_every=grid_every, progress=progress,
            cls=cls,
        )
        key = "all" if cls is None else f"class{cls}"
        optim[key] = state["optimizer"]
        counters["step"] += state["step"]
        counters["cur_nimg"] += state["cur_nimg"]
    return {"G": G, "D": D, "G_ema": G_ema if G_ema is not None else G, "optimizer": optim, **counters}


def _train_pair(
    G: nn.Module, D: nn.Module, G_ema: Optional[nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
    conditional: bool, num_classes: int, epochs: int, batch_size: int, lr: float, betas: tuple[float, float],
    ema_kimg: float, device: torch.device, amp_dtype: Optional[torch.dtype], channels_last: bool,
    generator: torch.Generator, stats: Stats, grid_dir: Optional[Path], grid_every: int, progress: bool,
    cls: Optional[int],
) -> Dict[str, Any]:
    # Load data: uint8 on the device, converted per batch.
    x_all, y_all = images.to(device), labels.to(device)
    n = len(x_all)
    sampler = EpochSampler(n, generator)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    z_dim = G.z_dim
    tag = "" if cls is None else f"class {cls} "

    # Fixed noise for grids: one row per class (up to 10) for a conditional G, else 8 x 8.
    rows = min(num_classes, 10) if conditional else 8
    fixed_z = torch.randn(rows * 8, z_dim, generator=generator).to(device)
    fixed_y = (torch.arange(rows).repeat_interleave(8) if conditional else torch.zeros(rows * 8, dtype=torch.long)).to(device)

    # Build optimizers.
    betas = (float(betas[0]), float(betas[1]))
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    mem = torch.channels_last if channels_last else torch.contiguous_format

    # Train.
    G.train()
    D.train()
    cur_nimg = 0
    total = epochs * steps_per_epoch
    bar = tqdm(total=total, desc=f"train-gan {tag}".strip(), disable=not progress, leave=False, mininterval=1.0)
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            idx = sampler.next(batch_size).to(device)
            real = to_float(x_all[idx]).contiguous(memory_format=mem)
            y = y_all[idx] if conditional else None
            z = torch.randn(len(idx), z_dim, device=device)

            # D: maximise log D(x) + log(1 - D(G(z))), as softplus on logits.
            with autocast(device, amp_dtype):
                fake = G(z, y)
                d_real = D(real, y).float()
                d_fake = D(fake.detach(), y).float()
            loss_D = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()

            # G: maximise log D(G(z)) (the non-saturating loss).
            with autocast(device, amp_dtype):
                d_gen = D(fake, y).float()
            loss_G = F.softplus(-d_gen).mean()
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()

            # G_ema: half-life ema_kimg thousand images, ramped up over the first images as StyleGAN2-ADA does.
            cur_nimg += len(idx)
            step += 1
            if G_ema is not None:
                ema_nimg = min(ema_kimg * 1000, cur_nimg * 0.05)
                ema_update(G_ema, G, 0.5 ** (len(idx) / max(ema_nimg, 1e-8)))

            stats.report("loss/G", loss_G)
            stats.report("loss/D", loss_D)
            stats.report("D(x)", torch.sigmoid(d_real).mean())
            stats.report("D(G(z))", torch.sigmoid(d_fake).mean())
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(G=f"{loss_G.item():.3f}", D=f"{loss_D.item():.3f}", refresh=False)

        extra = {} if cls is None else {"class": cls}
        row = stats.tick(epoch=epoch, step=step, kimg=round(cur_nimg / 1000, 3), **extra)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss/G", "loss/D", "D(x)", "D(G(z))")}, refresh=False)
        if grid_dir is not None and (epoch % grid_every == 0 or epoch == epochs):
            name = f"epoch-{epoch:04d}.png" if cls is None else f"class-{cls}-epoch-{epoch:04d}.png"
            save_grid(generate(G_ema if G_ema is not None else G, fixed_z, fixed_y if conditional else None),
                      grid_dir / name, nrow=8)
    bar.close()
    return {"optimizer": {"G": opt_G.state_dict(), "D": opt_D.state_dict()}, "step": step, "cur_nimg": cur_nimg}
