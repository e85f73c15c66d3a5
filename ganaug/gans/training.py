"""The GAN training loop: a plain function, shared by every family.

Non-saturating logistic loss (Goodfellow et al. 2014), Adam, a generator moving average (G_ema, as in
StyleGAN2-ADA's training_loop.py), lazy R1 (StyleGAN2), and the augmentation of every image D sees, real
and fake, in D's and G's steps, with ADA's adaptive probability (Karras et al. 2020) or DiffAugment;
bfloat16 autocast and channels_last where they help.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import cost, distributed
from ..checkpoint import Checkpointer, cpu_state
from ..data.images import image_hashes, to_float
from ..data.mixing import EpochSampler
from ..progress import bar as progress_bar
from ..utils import Stats, atomic_open, autocast, rng_state, set_rng_state
from .augment import AdaController, build_augment
from .base import GANS, GanNets


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta G_ema + (1 - beta) G; buffers copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def score_snapshot(evaluator: Callable[[nn.Module, Optional[int]], Dict[str, float]], scored: nn.Module,
                   cls: Optional[int], device: torch.device, stats: Stats, select: Optional[str],
                   best: Optional[Dict[str, Any]], **where: Any) -> Optional[Dict[str, Any]]:
    """Validation scores of `scored` (on their own noise: the training's random streams do not move), reported to
    `stats`; with select: best-fid, the snapshot of lowest FID so far (`best`, returned updated; `where`: its epoch,
    step and kimg)."""
    with cost.phase("validation"):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            scores = evaluator(scored, cls)
        for k, v in scores.items():
            stats.report(k, v)
        if select == "best-fid" and (best is None or scores["fid/val"] < best["fid"]):
            best = {"fid": float(scores["fid/val"]), **where,
                    "state": {k: v.detach().cpu().clone() for k, v in scored.state_dict().items()}}
    return best


def ema_step(G_ema: Optional[nn.Module], G: nn.Module, batch: int, cur_nimg: int, ema_kimg: float) -> None:
    """After a step of `batch` images (`cur_nimg` shown so far): G_ema's half-life is ema_kimg thousand images, ramped
    up over the first images as StyleGAN2-ADA does (nothing without a G_ema)."""
    if G_ema is not None:
        ema_nimg = min(ema_kimg * 1000, cur_nimg * 0.05)
        ema_update(G_ema, G, 0.5 ** (batch / max(ema_nimg, 1e-8)))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """`module`'s trainable parameters need no gradient inside the block (and need one again after it)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def params_outside(loss: torch.Tensor, module: nn.Module) -> list:
    """`module`'s parameters that `loss`'s graph does not reach (they would get no gradient from it)."""
    reached, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):  # AccumulateGrad: a leaf
            reached.add(id(fn.variable))
        stack.extend(f for f, _ in fn.next_functions)
    return [p for p in module.parameters() if id(p) not in reached]


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, y: Optional[torch.Tensor], batch_size: int = 500,
             **g_kwargs: Any) -> torch.Tensor:
    """G in eval mode on (z, y) in chunks -> float images in [-1, 1] on the CPU (g_kwargs: e.g. truncation_psi)."""
    was_training = G.training
    G.eval()
    out = []
    for i in range(0, len(z), batch_size):
        yb = y[i:i + batch_size] if y is not None else None
        out.append(G(z[i:i + batch_size], yb, **g_kwargs).float().cpu())
    G.train(was_training)
    return torch.cat(out)


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """Float [-1, 1] images -> one PNG grid (written atomically: a kill never leaves half a PNG)."""
    from torchvision.utils import save_image

    with atomic_open(path, "wb") as f:
        save_image(images.add(1).div(2).clamp(0, 1), f, format="png", nrow=nrow, padding=1, pad_value=1.0)


@dataclass
class AugmentSettings:
    """What D's inputs go through (gan.augment and its keys)."""

    kind: Optional[str] = None  # ada | fixed | diffaugment | None
    p: Optional[float] = None  # None: 0 for ada (it rises as needed), 1 for diffaugment
    augpipe: Optional[str] = None
    diffaugment: Optional[str] = None
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0


def augment_settings(g: Any) -> AugmentSettings:
    """The augmentation of D's inputs a resolved gan config asks for."""
    if getattr(g, "augment", None) in (None, "none"):
        return AugmentSettings()
    ada = {k: getattr(g, k) for k in ("ada_target", "ada_interval", "ada_kimg") if getattr(g, k) is not None}
    return AugmentSettings(kind=g.augment, p=g.augment_p, augpipe=g.augpipe, diffaugment=g.diffaugment, **ada)


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
    kimg: Optional[float] = None,
    r1_gamma: float = 0.0,
    r1_interval: int = 16,
    augment: Optional[AugmentSettings] = None,
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
    """Train G and D on uint8 `images`; returns the networks, optimizer and augmentation states and counters.

    A per-class pair (`nets.per_class`) trains each class's G and D on that class's images alone.
    `kimg`, when given, sets the length in thousands of real images instead of `epochs`.
    `checkpointer` saves everything needed to continue; `resume` (one such checkpoint) continues from it,
    drawing the same batches, noise and augmentations as a run that was never interrupted.
    `evaluator(G, cls)` scores the moving-average generator every `eval_every` epochs (FID on validation
    images, in metrics.jsonl); `select: best-fid` keeps the snapshot with the lowest one.
    Under torchrun (`distributed`) every rank trains G and D through DDP on its slice of the global batch;
    rank 0 evaluates, and its networks are every rank's at the end.
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
    augment_state: Dict[str, Any] = {}
    selection: Dict[str, Any] = {}  # per pair: the epoch whose G_ema was kept (select: best-fid) and its FID
    counters = {"step": 0, "cur_nimg": 0}
    first = 0
    if resume is not None:  # the weights of every pair so far, and what the finished pairs left
        G.load_state_dict(resume["state_dict"]["G"])
        D.load_state_dict(resume["state_dict"]["D"])
        if G_ema is not None:
            G_ema.load_state_dict(resume["state_dict"]["G_ema"])
        done = resume["resume"]["done"]
        optim, augment_state, counters = dict(done["optimizer"]), dict(done["augment"]), dict(done["counters"])
        selection = dict(done.get("selection", {}))
        first = int(resume["resume"]["pair"])

    for i, (cls, g, d, g_ema) in enumerate(pairs):
        if i < first:
            continue
        key = "all" if cls is None else f"class{cls}"

        def on_step(step: int, total: int, pair_state: Callable[[], Dict[str, Any]], i: int = i, key: str = key) -> None:
            if checkpointer is None:
                return

            def make_state() -> Dict[str, Any]:
                cur = pair_state()
                return {
                    "state_dict": {"G": cpu_state(G), "D": cpu_state(D), "G_ema": cpu_state(G_ema if G_ema is not None else G)},
                    "optimizer": {**optim, key: cur["optimizer"]},
                    "step": counters["step"] + step,
                    "cur_nimg": counters["cur_nimg"] + cur["cur_nimg"],
                    "rng": rng_state(),
                    "resume": {"pair": i, "done": {"optimizer": dict(optim), "augment": dict(augment_state),
                                                   "counters": dict(counters), "selection": dict(selection)},
                               "current": cur},
                }

            checkpointer.after_step(step, total, make_state, last=step >= total and i == len(pairs) - 1)

        if cls is not None:
            sel = labels == cls
            x, y = images[sel], labels[sel]
        else:
            x, y = images, labels
        pair_resume = None
        if resume is not None and i == first:
            pair_resume = {**resume["resume"]["current"], "rng": resume["rng"]}
        state = _train_pair(
            g, d, g_ema, x, y, conditional=getattr(G, "conditional", False) and cls is None,
            num_classes=num_classes, epochs=epochs, kimg=kimg, batch_size=batch_size, lr=lr, betas=betas,
            ema_kimg=ema_kimg, r1_gamma=r1_gamma, r1_interval=r1_interval, augment=augment or AugmentSettings(),
            mirror=mirror, device=device, amp_dtype=amp_dtype, channels_last=channels_last,
            generator=generator, stats=stats, grid_dir=grid_dir, grid_every=grid_every, progress=progress,
            cls=cls, on_step=on_step, resume=pair_resume, evaluator=evaluator, eval_every=eval_every, select=select,
            first_step=counters["step"],
        )
        optim[key] = state["optimizer"]
        if state["best"] is not None:
            selection[key] = {k: v for k, v in state["best"].items() if k != "state"}
        if state["augment"] is not None:
            augment_state[key] = state["augment"]
        counters["step"] += state["step"]
        counters["cur_nimg"] += state["cur_nimg"]
    # Several processes: rank 0's networks (its selected snapshot, its BatchNorm statistics) on every rank.
    for net in (G, D, G_ema):
        if net is not None:
            distributed.broadcast_module(net)
    return {"G": G, "D": D, "G_ema": G_ema if G_ema is not None else G, "optimizer": optim,
            "augment": augment_state, "selection": selection, **counters}


def _train_pair(
    G: nn.Module, D: nn.Module, G_ema: Optional[nn.Module], images: torch.Tensor, labels: torch.Tensor, *,
    conditional: bool, num_classes: int, epochs: int, kimg: Optional[float], batch_size: int, lr: float,
    betas: tuple[float, float], ema_kimg: float, r1_gamma: float, r1_interval: int, augment: AugmentSettings,
    mirror: bool, device: torch.device, amp_dtype: Optional[torch.dtype], channels_last: bool,
    generator: torch.Generator, stats: Stats, grid_dir: Optional[Path], grid_every: int, progress: bool,
    cls: Optional[int], on_step: Callable[..., None], resume: Optional[Dict[str, Any]],
    evaluator: Optional[Callable[[nn.Module, Optional[int]], Dict[str, float]]] = None, eval_every: Optional[int] = None,
    select: Optional[str] = None, first_step: int = 0,
) -> Dict[str, Any]:
    # `first_step`: the steps of the pairs before this one, so TensorBoard's x axis runs on over per-class pairs.
    # Load data: uint8 on the device, converted per batch.
    x_all, y_all = images.to(device), labels.to(device)
    n = len(x_all)
    sampler = EpochSampler(n, generator)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = math.ceil(kimg * 1000 / batch_size) if kimg is not None else epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)
    z_dim = G.z_dim
    tag = "" if cls is None else f"class {cls} "
    # Several processes (torchrun): G and D in DDP, each rank on its slice of the global batch; one: G and D.
    several = distributed.world() > 1
    G_net, D_net = distributed.wrap(G, device), distributed.wrap(D, device)

    # Fixed noise for grids: one row per class (up to 10) for a conditional G, else 8 x 8.
    rows = min(num_classes, 10) if conditional else 8
    fixed_z = torch.randn(rows * 8, z_dim, generator=generator).to(device)
    fixed_y = (torch.arange(rows).repeat_interleave(8) if conditional else torch.zeros(rows * 8, dtype=torch.long)).to(device)

    # Augmentation of everything D sees (ADA / DiffAugment), and ADA's controller of p.
    pipe = build_augment(augment.kind, p=augment.p, augpipe=augment.augpipe, diffaugment=augment.diffaugment)
    if pipe is not None:
        pipe = pipe.to(device)
    ada = (AdaController(pipe, target=augment.ada_target, interval=augment.ada_interval, kimg=augment.ada_kimg)
           if augment.kind == "ada" and pipe is not None else None)

    def aug(x: torch.Tensor) -> torch.Tensor:
        if pipe is None:
            return x
        # Several processes: this rank's rows augmented as within the global batch, so the draws match one process.
        return distributed.per_sample(pipe, x, batch_size) if several else pipe(x)

    # Build optimizers. With lazy R1 every r1_interval steps, D's Adam is rescaled as StyleGAN2 does so the
    # regulariser's extra steps do not change the effective learning rate and momentum.
    use_r1 = r1_gamma > 0
    ratio = r1_interval / (r1_interval + 1) if use_r1 else 1.0
    # foreach: the numbers of torch's per-parameter loop (the CPU default), bit for bit, in fewer kernels (the cGAN's
    # two Adam steps 0.67 ms instead of 0.79 at 2 threads: small beside its 30-40 ms training step)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(float(betas[0]), float(betas[1])), foreach=True)
    opt_D = torch.optim.Adam(D.parameters(), lr=lr * ratio, betas=(float(betas[0]) ** ratio, float(betas[1]) ** ratio),
                             foreach=True)
    mem = torch.channels_last if channels_last else torch.contiguous_format
    step, cur_nimg = 0, 0
    best: Optional[Dict[str, Any]] = None  # select: best-fid, the lowest validation FID so far and its G_ema

    # Resume: everything a step draws from or updates, as it was after the checkpoint's step.
    if resume is not None:
        opt_G.load_state_dict(resume["optimizer"]["G"])
        opt_D.load_state_dict(resume["optimizer"]["D"])
        if pipe is not None:
            pipe.p.fill_(resume["augment"]["p"])  # float32 -> float -> float32 is exact
        if ada is not None:
            ada.load_state_dict(resume["augment"]["ada"])
        sampler.load_state_dict(resume["sampler"])
        generator.set_state(resume["generator"])
        fixed_z = resume["fixed_z"].to(device)
        stats.load_state_dict(resume["stats"])
        set_rng_state(resume["rng"])
        step, cur_nimg = int(resume["step"]), int(resume["cur_nimg"])
        best = resume.get("best")

    def pair_state() -> Dict[str, Any]:
        """Everything above as plain data: for a resumable checkpoint, and what the pair returns when it is done."""
        return {"optimizer": {"G": opt_G.state_dict(), "D": opt_D.state_dict()}, "step": step, "cur_nimg": cur_nimg,
                "total": total,
                "augment": None if pipe is None else {"kind": augment.kind, "p": float(pipe.p),
                                                      "ada": ada.state_dict() if ada is not None else None},
                "sampler": sampler.state_dict(), "generator": generator.get_state(), "fixed_z": fixed_z.cpu(),
                "stats": stats.state_dict(), "best": best}

    # Train.
    G.train()
    D.train()
    bar = progress_bar(total=total, initial=step, desc=f"train-gan {tag}".strip(), unit="step", disable=not progress,
                       leave=False, mininterval=1.0)
    tick_start, tick_nimg = time.time(), cur_nimg
    while step < total:
        with cost.phase("steps"):
            idx = sampler.next(batch_size).to(device)
            real = to_float(x_all[idx]).contiguous(memory_format=mem)
            if mirror:  # x-flips of the data set: each real image flipped with probability 1/2
                flip = torch.rand(len(idx), device=device) < 0.5
                real = torch.where(flip[:, None, None, None], real.flip(3), real)
            y = y_all[idx] if conditional else None
            z = torch.randn(len(idx), z_dim, device=device)
            if several:  # every rank drew the whole global batch above (the same streams); each trains on its slice
                real, z = distributed.shard(real), distributed.shard(z)
                y = distributed.shard(y) if y is not None else None

            # D: maximise log D(x) + log(1 - D(G(z))), as softplus on logits, every image augmented.
            with autocast(device, amp_dtype):
                fake = G_net(z, y)
                d_real = D_net(aug(real), y).float()
                d_fake = D_net(aug(fake.detach()), y).float()
            loss_D = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
            if ada is not None:
                ada.accumulate(distributed.gather(d_real.detach()))  # r_t over the global batch

            # D, lazily every r1_interval steps: R1 = gamma/2 E[|grad_x D(x)|^2] on (augmented) reals, times the interval.
            if use_r1 and step % r1_interval == 0:
                real_tmp = real.detach().requires_grad_(True)
                d_r1 = D_net(aug(real_tmp), y).float()
                (grad,) = torch.autograd.grad(d_r1.sum(), real_tmp, create_graph=True)
                penalty = grad.square().sum(dim=[1, 2, 3])
                loss_r1 = penalty.mean() * (r1_gamma / 2) * r1_interval
                outside: list = []
                if several:  # every D parameter in the graph (D's output bias is not in R1's), as DDP's reduction waits for all
                    outside = params_outside(loss_r1, D)
                    loss_r1 = loss_r1 + d_r1.sum() * 0
                opt_D.zero_grad(set_to_none=True)
                loss_r1.backward()
                for p in outside:  # no gradient, as on one process: Adam leaves them (and their moments) alone
                    p.grad = None
                opt_D.step()
                stats.report("loss/r1", *distributed.mean(penalty.mean()))

            # G: maximise log D(G(z)) (the non-saturating loss). D itself, not its DDP wrapper: only G's gradients
            # are averaged over the ranks here. D is frozen for it, as StyleGAN2-ADA's loop freezes the modules a
            # phase does not train: its weight gradients, which D's next step would discard, are not computed
            # (the cGAN's step 5-8% faster; G's gradient, and so every number, the same bit for bit).
            with frozen(D):
                with autocast(device, amp_dtype):
                    d_gen = D(aug(fake), y).float()
                loss_G = F.softplus(-d_gen).mean()
                opt_G.zero_grad(set_to_none=True)
                loss_G.backward()
            opt_G.step()

            cur_nimg += len(idx)
            step += 1
            ema_step(G_ema, G, len(idx), cur_nimg, ema_kimg)

            # ADA: move p toward r_t = target every ada_interval minibatches.
            if ada is not None:
                rt = ada.update(len(idx))
                if rt is not None:
                    stats.report("augment/rt", rt)
            if pipe is not None:
                stats.report("augment/p", float(pipe.p))
            # Several processes: the means over the global batch (of the ranks' equal slices).
            rep_G, rep_D, rep_real, rep_fake = distributed.mean(loss_G, loss_D, torch.sigmoid(d_real).mean(),
                                                                torch.sigmoid(d_fake).mean())
            stats.report("loss/G", rep_G)
            stats.report("loss/D", rep_D)
            stats.report("D(x)", rep_real)
            stats.report("D(G(z))", rep_fake)
            bar.update(1)
            if step % 10 == 0:
                post = {"G": f"{loss_G.item():.3f}", "D": f"{loss_D.item():.3f}"}
                if pipe is not None:
                    post["p"] = f"{float(pipe.p):.3f}"
                bar.set_postfix(post, refresh=False)

        # The end of an epoch: one row of metrics, and a grid every grid_every epochs.
        if step % steps_per_epoch == 0 or step == total:
            epoch = math.ceil(step / steps_per_epoch)
            extra = {} if cls is None else {"class": cls}
            now = time.time()
            img_per_s = (cur_nimg - tick_nimg) / max(now - tick_start, 1e-9)
            if evaluator is not None and eval_every and (epoch % eval_every == 0 or epoch == epochs):
                best = score_snapshot(evaluator, G_ema if G_ema is not None else G, cls, device, stats, select, best,
                                      epoch=epoch, step=step, kimg=cur_nimg / 1000)
            tick_start, tick_nimg = time.time(), cur_nimg
            row = stats.tick(epoch=epoch, step=step, kimg=round(cur_nimg / 1000, 3), img_per_s=round(img_per_s, 2),
                             global_step=first_step + step, **extra)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss/G", "loss/D", "D(x)", "D(G(z))", "augment/p")
                             if k in row}, refresh=False)
            if grid_dir is not None and (epoch % grid_every == 0 or epoch == epochs):
                with cost.phase("grids"):
                    name = f"epoch-{epoch:04d}.png" if cls is None else f"class-{cls}-epoch-{epoch:04d}.png"
                    grid = generate(G_ema if G_ema is not None else G, fixed_z, fixed_y if conditional else None)
                    save_grid(grid, grid_dir / name, nrow=8)
                    stats.image("grid" if cls is None else f"grid/class-{cls}", grid, step=first_step + step, nrow=8)

        # A resumable checkpoint when one is due (or Ctrl-C asked for one), after the step's every update.
        with cost.phase("checkpoint"):
            on_step(step, total, pair_state)
    bar.close()
    if best is not None:  # select: best-fid - the kept generator is the snapshot with the lowest validation FID
        (G_ema if G_ema is not None else G).load_state_dict(best["state"])
    return pair_state()


def train_generator(nets: GanNets, g: Any, **common: Any) -> Dict[str, Any]:
    """Train any family with its own loop (`trainer` meta), or the adversarial one; `common` as train_gan takes it.

    The result's `trained_hashes` is the content hash of every image handed to the loop, hashed here, where
    training starts (the protocol audit compares it with the split's parts).
    """
    trained_hashes = image_hashes(common["images"])
    trainer = GANS.meta(g.name).get("trainer")
    if trainer is not None:
        return {**trainer(nets, g, **common), "trained_hashes": trained_hashes}
    result = train_gan(nets, r1_gamma=getattr(g, "r1_gamma", None) or 0.0,
                       r1_interval=getattr(g, "r1_interval", None) or 16, augment=augment_settings(g), **common)
    return {**result, "trained_hashes": trained_hashes}
