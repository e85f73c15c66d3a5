"""The classifier training loop: a fixed budget of optimizer steps, model selection on real validation images."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import cost, distributed
from ..checkpoint import Checkpointer, cpu_state
from ..data.images import image_hashes, to_float
from ..data.mixing import BatchSource
from ..progress import bar as progress_bar
from ..utils import Stats, autocast, rng_state, set_rng_state


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, device: torch.device, amp_dtype: Optional[torch.dtype],
            channels_last: bool = False, batch_size: int = 1000) -> torch.Tensor:
    """Predicted labels for uint8 images (eval mode, in chunks)."""
    was_training = model.training
    model.eval()
    mem = torch.channels_last if channels_last else torch.contiguous_format
    preds = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device)).contiguous(memory_format=mem)
        with autocast(device, amp_dtype):
            preds.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(preds)


def train_classifier(
    model: nn.Module,
    *,
    batches: BatchSource,
    augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]],
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    schedule: str,
    eval_every: int,
    device: torch.device,
    amp_dtype: Optional[torch.dtype],
    channels_last: bool,
    generator: torch.Generator,
    stats: Stats,
    progress: bool = True,
    desc: str = "train-clf",
    checkpointer: Optional[Checkpointer] = None,
    resume: Optional[Dict[str, Any]] = None,
    mixer: Optional[Callable[[torch.Tensor, torch.Tensor, torch.Generator], Tuple[torch.Tensor, torch.Tensor]]] = None,
) -> Dict[str, Any]:
    """Train for exactly `steps` optimizer steps; keep the weights with the best real-validation accuracy.

    The test set is not an argument: this loop cannot see it. `checkpointer` saves everything needed to
    continue; `resume` (one such checkpoint) continues from it exactly as if never interrupted.
    Under torchrun (`distributed`) every rank draws the same global batch, augments and mixes it, and trains
    the model through DDP on its slice; rank 0 scores validation and selects, and its selected weights are
    every rank's at the end.
    """
    # Build the model and optimizer.
    with cost.phase("build"):
        model = model.to(device)
        mem = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        several = distributed.world() > 1
        net = distributed.wrap(model, device)  # what trains: DDP over the ranks, or the model itself on one process
        # foreach: the same numbers as torch's per-parameter loop, the CPU default, in fewer kernels
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
        if schedule == "cosine":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        val_labels = val_labels.cpu()
        val_hashes = image_hashes(val_images)  # what selection really saw, for the audit: not declared, recorded

    best: Dict[str, Any] = {"val_acc": -1.0, "step": 0, "state": None}
    seen = {"real": 0, "fake": 0}
    start = 0

    # Resume: weights, optimizer, schedule, best-so-far, data position and every RNG as after the saved step.
    if resume is not None:
        r = resume["resume"]
        model.load_state_dict(resume["state_dict"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(r["scheduler"])
        batches.load_state_dict(r["batches"])
        stats.load_state_dict(r["stats"])
        best, seen, start = dict(r["best"]), dict(r["seen"]), int(resume["step"])
        set_rng_state(resume["rng"])

    def make_state() -> Dict[str, Any]:
        return {"state_dict": cpu_state(model),
                "optimizer": opt.state_dict(), "step": step, "rng": rng_state(),
                "resume": {"scheduler": sched.state_dict(), "batches": batches.state_dict(), "stats": stats.state_dict(),
                           "best": best, "seen": dict(seen)}}

    # Train.
    model.train()
    bar = progress_bar(range(start + 1, steps + 1), initial=start, total=steps, desc=desc, unit="step",
                       disable=not progress, leave=False, mininterval=1.0)
    for step in bar:
        with cost.phase("steps"):
            x, y, is_real, soft = batches.next(batch_size)
            if augment is not None:
                x = augment(x, generator)
            x = to_float(x)
            target = soft if soft is not None else y  # (B, K) probabilities (an edited set's soft labels) or (B,) classes
            if mixer is not None:  # MixUp / CutMix: mixed images, soft labels
                x, target = mixer(x, target, generator)
            if several:  # the global batch was drawn, augmented and mixed above, alike on every rank: train on a slice
                x, y, target = distributed.shard(x), distributed.shard(y), distributed.shard(target)
            x = x.to(device).contiguous(memory_format=mem)
            y, target = y.to(device), target.to(device)
            with autocast(device, amp_dtype):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            n_real = int(is_real.sum())
            seen["real"] += n_real
            seen["fake"] += len(is_real) - n_real
            rep_loss, rep_acc = distributed.mean(loss, (logits.argmax(1) == y).float().mean())  # over the global batch
            stats.report("loss/train", rep_loss)
            stats.report("acc/train", rep_acc)
            stats.report("share_real", n_real / len(is_real))

        # Model selection on real validation images only (by rank 0 under torchrun; the others go on to the next step).
        if step % eval_every == 0 or step == steps:
            if distributed.is_main():
                with cost.phase("validation"):  # scoring, keeping the best weights, the row of metrics
                    pred = predict(model, val_images, device=device, amp_dtype=amp_dtype, channels_last=channels_last)
                    val_acc = float((pred == val_labels).float().mean())
                    if val_acc >= best["val_acc"]:  # ties go to the later, more trained weights
                        best = {"val_acc": val_acc, "step": step,
                                "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                    stats.tick(step=step, lr=sched.get_last_lr()[0], **{"acc/val": val_acc})
                    bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_acc:.4f}", refresh=False)
            else:
                stats.tick(step=step, lr=sched.get_last_lr()[0])
        if checkpointer is not None:
            with cost.phase("checkpoint"):
                checkpointer.after_step(step, steps, make_state)
    bar.close()
    if distributed.is_main():
        model.load_state_dict(best["state"])
    # Several processes: rank 0's selected weights (and BatchNorm statistics) and its choice on every rank.
    distributed.broadcast_module(model)
    best = distributed.broadcast_object({"step": best["step"], "val_acc": best["val_acc"]})
    return {"model": model, "best_step": best["step"], "best_val_acc": best["val_acc"], "seen": seen,
            "optimizer": opt.state_dict(), "val_hashes": val_hashes}
