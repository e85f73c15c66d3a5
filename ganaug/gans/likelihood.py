"""The training loop of the generators that maximise a likelihood bound instead of playing a game (the VAE, the
diffusion model): one network, one loss, Adam, a moving average, and everything the GAN loop has besides -
shuffled epochs, x-flips, fixed-noise grids, one metrics row per epoch, validation FID and best-FID
selection, and resumable checkpoints that continue bit for bit.

Under torchrun (`ganaug.distributed`) the loss runs in DDP as the GAN loop's networks do: every rank draws the
global batch (and its flips; the loss its noise, timesteps and label drops with `distributed.draw`), trains on
its slice, and reports the global batch's means; rank 0 evaluates and writes, and its networks are every
rank's at the end.

Checkpoints keep the GAN loop's layout (state_dict {G, D, G_ema}, resume {pair, done, current}), so the
stage, the sampler and the resume tests treat every family alike; D is empty.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from .. import distributed
from ..checkpoint import Checkpointer, cpu_state
from ..data.images import to_float
from ..data.mixing import EpochSampler
from ..progress import bar as progress_bar
from ..utils import Stats, autocast, rng_state, set_rng_state
from .training import ema_step, generate, save_grid, score_snapshot

# loss(model, x in [-1, 1], y, cur_nimg, generator) -> (scalar to minimise, {name: value} to report)
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int, torch.Generator], tuple]


class Objective(nn.Module):
    """The loss as a module's forward: what DDP wraps (it averages the gradients of what its forward ran)."""

    def __init__(self, model: nn.Module, loss: LossFn):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, x: torch.Tensor, y: torch.Tensor, cur_nimg: int, generator: torch.Generator) -> tuple:
        return self.loss(self.model, x, y, cur_nimg, generator)


def train_likelihood(
    model: nn.Module,
    *,
    trained: nn.Module,
    loss: LossFn,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    kimg: Optional[float],
    batch_size: int,
    lr: float,
    betas: tuple[float, float],
    ema_kimg: float,
    device: torch.device,
    amp_dtype: Optional[torch.dtype],
    generator: torch.Generator,
    stats: Stats,
    mirror: bool = False,
    grid_dir: Optional[Path] = None,
    grid_every: int = 10,
    progress: bool = True,
    checkpointer: Optional[Checkpointer] = None,
    resume: Optional[Dict[str, Any]] = None,
    evaluator: Optional[Callable[[nn.Module, Optional[int]], Dict[str, float]]] = None,
    eval_every: Optional[int] = None,
    select: Optional[str] = None,
) -> Dict[str, Any]:
    """Train `model` (the generator interface G(z, y); `trained` is the part with parameters, e.g. its U-Net) on
    uint8 images with `loss`. Returns what `train_gan` returns: G, an empty D, G_ema, states, counters."""
    # Build: the model on the device, its moving average, the optimizer; the data order.
    model = model.to(device)
    G_ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_kimg > 0 else None
    opt = torch.optim.Adam(trained.parameters(), lr=lr, betas=(float(betas[0]), float(betas[1])), foreach=True)
    x_all, y_all = images.to(device), labels.to(device)
    n = len(x_all)
    sampler = EpochSampler(n, generator)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = math.ceil(kimg * 1000 / batch_size) if kimg is not None else epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)
    rows = min(num_classes, 10)
    fixed_z = torch.randn(rows * 8, model.z_dim, generator=generator).to(device)
    fixed_y = torch.arange(rows).repeat_interleave(8).to(device)
    step, cur_nimg = 0, 0
    best: Optional[Dict[str, Any]] = None
    # Several processes (torchrun): the loss in DDP, each rank on its slice of the global batch; one: the loss.
    several = distributed.world() > 1
    objective = distributed.wrap(Objective(model, loss), device)

    # Resume: weights, optimizer, data order and every random stream as after the checkpoint's step.
    if resume is not None:
        cur = resume["resume"]["current"]
        model.load_state_dict(resume["state_dict"]["G"])
        if G_ema is not None:
            G_ema.load_state_dict(resume["state_dict"]["G_ema"])
        opt.load_state_dict(cur["optimizer"]["G"])
        sampler.load_state_dict(cur["sampler"])
        generator.set_state(cur["generator"])
        fixed_z = cur["fixed_z"].to(device)
        stats.load_state_dict(cur["stats"])
        set_rng_state(resume["rng"])
        step, cur_nimg, best = int(cur["step"]), int(cur["cur_nimg"]), cur.get("best")

    def pair_state() -> Dict[str, Any]:
        return {"optimizer": {"G": opt.state_dict()}, "step": step, "cur_nimg": cur_nimg, "total": total, "augment": None,
                "sampler": sampler.state_dict(), "generator": generator.get_state(), "fixed_z": fixed_z.cpu(),
                "stats": stats.state_dict(), "best": best}

    def make_state() -> Dict[str, Any]:
        cur = pair_state()
        return {"state_dict": {"G": cpu_state(model), "D": {}, "G_ema": cpu_state(G_ema if G_ema is not None else model)},
                "optimizer": {"all": cur["optimizer"]}, "step": step, "cur_nimg": cur_nimg, "rng": rng_state(),
                "resume": {"pair": 0, "done": {"optimizer": {}, "augment": {}, "counters": {"step": 0, "cur_nimg": 0},
                                               "selection": {}}, "current": cur}}

    # Train.
    model.train()
    bar = progress_bar(total=total, initial=step, desc="train-gan", unit="step", disable=not progress, leave=False,
                       mininterval=1.0)
    tick_start, tick_nimg = time.time(), cur_nimg
    while step < total:
        idx = sampler.next(batch_size).to(device)
        x = to_float(x_all[idx])
        if mirror:  # x-flips of the data set: each real image flipped with probability 1/2
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(3), x)
        y = y_all[idx]
        if several:  # every rank drew the whole global batch above (the same streams); each trains on its slice
            x, y = distributed.shard(x), distributed.shard(y)
        with autocast(device, amp_dtype):
            value, reports = objective(x, y, cur_nimg, generator)
        opt.zero_grad(set_to_none=True)
        value.float().backward()
        opt.step()
        cur_nimg += len(idx)
        step += 1
        ema_step(G_ema, model, len(idx), cur_nimg, ema_kimg)
        # Several processes: the means over the global batch (of the ranks' equal slices).
        keys = [k for k, v in reports.items() if torch.is_tensor(v)]
        reports.update(zip(keys, distributed.mean(*(reports[k] for k in keys)) if keys else []))
        for k, v in reports.items():
            stats.report(k, v)
        bar.update(1)

        # The end of an epoch: validation FID when asked, one row of metrics, a grid every grid_every epochs.
        if step % steps_per_epoch == 0 or step == total:
            epoch = math.ceil(step / steps_per_epoch)
            scored = G_ema if G_ema is not None else model
            if evaluator is not None and eval_every and (epoch % eval_every == 0 or epoch == epochs):
                best = score_snapshot(evaluator, scored, None, device, stats, select, best, epoch=epoch, step=step,
                                      kimg=cur_nimg / 1000)
            now = time.time()
            row = stats.tick(epoch=epoch, step=step, kimg=round(cur_nimg / 1000, 3),
                             img_per_s=round((cur_nimg - tick_nimg) / max(now - tick_start, 1e-9), 2))
            tick_start, tick_nimg = time.time(), cur_nimg
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.startswith("loss/")}, refresh=False)
            if grid_dir is not None and (epoch % grid_every == 0 or epoch == epochs):
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    grid = generate(scored, fixed_z, fixed_y)
                save_grid(grid, grid_dir / f"epoch-{epoch:04d}.png", nrow=8)
                stats.image("grid", grid, step=step, nrow=8)

        if checkpointer is not None:
            checkpointer.after_step(step, total, make_state)
    bar.close()
    if best is not None:  # select: best-fid - the snapshot with the lowest validation FID
        (G_ema if G_ema is not None else model).load_state_dict(best["state"])
    # Several processes: rank 0's networks (its selected snapshot) on every rank.
    for net in (model, G_ema):
        if net is not None:
            distributed.broadcast_module(net)
    state = pair_state()
    return {"G": model, "D": None, "G_ema": G_ema if G_ema is not None else model, "optimizer": {"all": state["optimizer"]},
            "augment": {}, "selection": {"all": {k: v for k, v in best.items() if k != "state"}} if best else {},
            "step": step, "cur_nimg": cur_nimg}
