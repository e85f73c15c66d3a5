"""Stage `features`: the domain feature extractor, a small CNN trained on the split's real training images
only (never validation or test, and with no model selection, so neither is touched).

It is shared by everything that needs to look at images the way a classifier of this data does: the
sample-quality metrics and copy check of `evaluate`, the class-consistency check (it labels the fakes),
and the FID the GAN loop computes on validation images while it trains (`gan.eval_every`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import cpu_state, save_checkpoint
from ..classifiers import get_classifier
from ..classifiers.train import predict
from ..config import Config, to_dict
from ..data.images import image_hashes, to_float
from ..data.mixing import EpochSampler
from ..progress import bar as progress_bar
from ..progress import echo
from ..utils import Stats, atomic_write_json, preserve_rng, resolve_device, seed_everything
from .layout import TRAINED_ON, paths
from .records import FEATURES, building, output_hashes, stage_folder, start_stage, trained_on, write_record
from .split import load_split_data

CHECKPOINT = "checkpoint.pt"


def domain_checkpoint(cfg: Config, force: bool = False, progress: bool = False) -> Path:
    """The domain extractor's checkpoint, trained first when it is missing or made by another config.

    Training it leaves every random stream as it found it: a GAN whose loop asks for it mid-setup trains the same.
    """
    with preserve_rng():
        return _domain_checkpoint(cfg, force, progress)


def _domain_checkpoint(cfg: Config, force: bool, progress: bool = False) -> Path:
    p = paths(cfg)
    folder = stage_folder(p, FEATURES)
    todo = start_stage(cfg, FEATURES, force, quiet=True)
    if todo is None:
        return folder / CHECKPOINT
    fp, config = todo
    started = time.time()
    d = cfg.evaluate.domain
    data, manifest = load_split_data(cfg)
    ch, h, w = (int(s) for s in data.train.images.shape[1:])
    device = resolve_device(cfg.device)

    # Build: the classifier family's small CNN, seeded.
    generator = seed_everything(d.seed)
    kwargs = {"resolution": h, "channels": ch, "num_classes": len(data.classes), "width": d.width}
    model = get_classifier("small-cnn", **kwargs).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=d.lr, weight_decay=5e-4, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, d.steps) / d.steps)))
    sampler = EpochSampler(len(data.train.labels), generator)
    echo(f"features: training the domain extractor (small-cnn width {d.width}, {d.steps} steps) on the "
         f"{len(data.train.labels)} real training images only")

    # The stats stream (metrics.jsonl and TensorBoard's event files) is closed before the folder is renamed.
    with building(folder) as out, Stats(out / "metrics.jsonl") as stats:
        # Train on the training images alone, a fixed number of steps: no selection, so no validation image is used.
        # The images the loop draws from are hashed here, for the audit: what it trained on, not what it was meant to.
        images, labels = data.train.images, data.train.labels
        seen = trained_on(image_hashes(images), manifest, "stages.features (the domain extractor's loop)")
        model.train()
        for step in progress_bar(range(1, d.steps + 1), total=d.steps, desc="features: domain extractor", unit="step",
                                 disable=not progress, leave=False, mininterval=1.0):
            idx = sampler.next(d.batch_size)
            x, y = to_float(images[idx]).to(device), labels[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            stats.report("loss/train", loss)
            if step == d.steps:
                # For context only (it selects nothing): how well it tells the real validation images' classes
                # apart, after the last step; in the last row.
                val_acc = float((predict(model, data.val.images, device=device, amp_dtype=None)
                                 == data.val.labels).float().mean())
                stats.tick(step=step, **{"acc/val": val_acc})
            elif step % 100 == 0:
                stats.tick(step=step)
        save_checkpoint(out / CHECKPOINT, {
            "kind": "classifier", "name": "small-cnn", "kwargs": kwargs, "state_dict": cpu_state(model), "optimizer": {},
            "step": d.steps, "rng": {}, "config": to_dict(cfg), "data_fingerprint": manifest["fingerprint"],
            "classes": data.classes, "trained_on": {"n": seen["n"]}, "val_accuracy": val_acc, "fingerprint": fp})
        atomic_write_json(out / TRAINED_ON, seen)
        write_record(out, "features", fp, config, started, {"val_accuracy": val_acc, **output_hashes(out, CHECKPOINT)})
    echo(f"features: domain extractor trained in {time.time() - started:.0f}s; it labels {100 * val_acc:.1f}% of the "
         f"real validation images right (for reference; nothing is selected on them)")
    return folder / CHECKPOINT
