"""Stage `train-clf`: one classifier per arm and seed; the test set is scored once, at the end."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .. import cost, distributed, memory
from ..checkpoint import cpu_state, save_checkpoint
from ..classifiers import get_classifier, imagenet_kwargs
from ..classifiers.models import load_imagenet_weights
from ..classifiers.train import predict, train_classifier
from ..config import ArmConfig, Config, Rep, save_config, to_dict
from ..data.augment import POLICIES, ClassicAugment, LabelMix, PolicyAugment
from ..data.mixing import BatchSource
from ..data.sources import source_hflip
from ..data.split import SplitData
from ..data.synthetic import load_synthetic, read_soft_labels
from ..errors import CheckpointError
from ..metrics import classification_report
from ..progress import echo
from ..utils import (
    Stats,
    atomic_write_json,
    autocast_dtype,
    catch_stop,
    resolve_device,
    rng_state,
    seed_everything,
    torch_threads,
    use_channels_last,
)
from .layout import paths
from .records import (
    SAMPLES,
    building,
    clf_config,
    clf_fingerprint,
    make_checkpointer,
    needs_run,
    partial_of,
    require_stage,
    resume_point,
    write_record,
)
from .split import load_split_data


def run_train_clf(cfg: Config, arms: Optional[Sequence[ArmConfig]] = None, seeds: Optional[Sequence[int]] = None,
                  force: bool = False, progress: bool = True, resume: bool = False) -> List[Path]:
    """Train every (arm, seed) whose run is missing; returns the run folders.

    `resume`: continue interrupted runs from their newest checkpoints (without it, one is an error).
    Under torchrun, each run is one model on all the processes (`distributed`): rank 0 writes, the others only train.
    """
    distributed.require_divisible(cfg.classifier.batch_size, "classifier.batch_size")
    arms = list(arms or cfg.all_arms)
    seeds = list(seeds if seeds is not None else cfg.seeds)
    p = paths(cfg)
    todo = []
    for arm in arms:
        for seed in seeds:
            run = p.clf_run(arm.name, seed)
            fp, config = clf_fingerprint(cfg, arm, seed), clf_config(cfg, arm, seed)
            what = f"classifier run '{arm.name}' seed {seed}"
            if needs_run(run, fp, config, force, what, "ganaug train-clf"):
                ckpt = resume_point(run, fp, config, "classifier", resume=resume, force=force, what=what,
                                    command="ganaug train-clf")
                todo.append((arm, seed, ckpt))
    done = len(arms) * len(seeds) - len(todo)
    if done and distributed.is_main():
        echo(f"train-clf: {done} run(s) up to date")
    if not todo:
        return [p.clf_run(a.name, s) for a in arms for s in seeds]

    # Load data once: the split, and the synthetic set if any arm needs it (memory-mapped, shared between runs).
    with cost.phase("load"):
        memory.check(cfg, "train-clf", paths(cfg))
        data, _ = load_split_data(cfg)
        fakes: Dict[Rep, Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = {}  # images, labels, soft labels
        for rep in sorted({cfg.rep_of(arm, seed) for arm, seed, _ in todo if arm.uses_synthetic},
                          key=lambda r: (r.generator or "", r.seed or 0)):
            require_stage(cfg, SAMPLES, rep)
            fakes[rep] = (*load_synthetic(p.samples(rep), tuple(data.train.images.shape[1:]), data.classes),
                          read_soft_labels(p.samples(rep)))
    device = resolve_device(cfg.device)
    for i, (arm, seed, ckpt) in enumerate(todo, 1):
        fake_x, fake_y, fake_soft = fakes[cfg.rep_of(arm, seed)] if arm.uses_synthetic else (None, None, None)
        with torch_threads(cfg.executor.clf_threads):  # the same in every executor, so the numbers are too
            _train_one(cfg, arm, seed, data, fake_x, fake_y, device, progress and distributed.is_main(),
                       f"[{i}/{len(todo)}]", ckpt, fake_soft)
    return [p.clf_run(a.name, s) for a in arms for s in seeds]


def make_augment(cfg: Config, arm: ArmConfig) -> Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]]:
    """The per-sample augmentation an arm asks for: classic, or one of torchvision's policies."""
    if arm.augment == "classic":
        return ClassicAugment(cfg.augment, source_hflip(cfg.data, cfg.augment.hflip))
    if arm.augment in POLICIES:
        return PolicyAugment(arm.augment)
    return None


def _train_one(cfg: Config, arm: ArmConfig, seed: int, data: SplitData, fake_x: Optional[torch.Tensor],
               fake_y: Optional[torch.Tensor], device: torch.device, progress: bool, counter: str,
               ckpt: Optional[Dict[str, Any]], fake_soft: Optional[torch.Tensor] = None) -> None:
    started = time.time()
    c = cfg.classifier
    p = paths(cfg)
    main = distributed.is_main()  # the one process that writes and prints (always, without torchrun)
    say = echo if main else (lambda msg: None)
    run_dir = p.clf_run(arm.name, seed)
    rep = cfg.rep_of(arm, seed)
    num_classes = len(data.classes)
    ch, h, w = data.train.images.shape[1:]

    # Build the model, the batch source and the augmentation; all seeded by this run's seed.
    with cost.phase("build"):
        generator = seed_everything(seed)
        kwargs = {"resolution": int(h), "channels": int(ch), "num_classes": num_classes, "width": c.width,
                  **imagenet_kwargs(c)}
        model = get_classifier(c.name, **kwargs)
        if (c.pretrained or c.weights is not None) and ckpt is None:  # fine-tune from ImageNet weights
            source = load_imagenet_weights(c.name, model, c.weights)
            say(f"train-clf {counter} {arm.name} seed {seed}: {c.name} from {source}, inputs resized to {kwargs['input_size']}")
        batches = BatchSource(arm, data.train.images, data.train.labels, fake_x, fake_y, num_classes, generator, fake_soft)
        augment = make_augment(cfg, arm)
        mixer = LabelMix(arm.label_mix, getattr(cfg.augment, f"{arm.label_mix}_alpha") or 1.0, num_classes) \
            if arm.label_mix is not None else None
        amp_dtype = autocast_dtype(c.amp, device)
        channels_last = use_channels_last(c.channels_last, device)

    if ckpt is not None:
        if ckpt["data_fingerprint"] != data.fingerprint:
            raise CheckpointError(f"checkpoint '{ckpt['path']}' was trained on another split; "
                                  "rerun `ganaug train-clf` with --force to start over on this one")
        say(f"train-clf {counter} {arm.name} seed {seed}: resuming from {ckpt['path']} (step {ckpt['step']})")

    fp, config = clf_fingerprint(cfg, arm, seed), clf_config(cfg, arm, seed)
    test_reads = data.test.reads  # every read of the test images from here on is this run's (the audit expects one)
    # Under torchrun rank 0 alone writes; the other ranks train beside it (their checkpointer only joins stops).
    folder = building(run_dir, resume=ckpt is not None) if main else contextlib.nullcontext(partial_of(run_dir))
    # The stats stream (metrics.jsonl and TensorBoard's event files) is closed before the folder is renamed.
    with folder as out, catch_stop() as stop, Stats(out / "metrics.jsonl" if main else None) as stats:
        # Train, selecting weights on the real validation set; resumable checkpoints as configured.
        checkpointer = make_checkpointer(cfg, out, stop, {
            "kind": "classifier", "name": c.name, "kwargs": kwargs, "config": to_dict(cfg),
            "data_fingerprint": data.fingerprint, "fingerprint": fp, "stage_config": config, "classes": data.classes})
        res = train_classifier(
            model, batches=batches, augment=augment, mixer=mixer, val_images=data.val.images, val_labels=data.val.labels,
            steps=c.steps, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay, schedule=c.schedule,
            eval_every=c.eval_every, device=device, amp_dtype=amp_dtype, channels_last=channels_last,
            generator=generator, stats=stats, progress=progress, desc=f"train-clf {arm.name} seed {seed}",
            checkpointer=checkpointer, resume=ckpt,
        )
        train_seconds = time.time() - started
        if not main:  # the selected weights are rank 0's now; wait until it has tested them and written the run
            distributed.barrier()
            return

        # Test: once, with the selected weights.
        with cost.phase("test"):
            pred = predict(res["model"], data.test.images, device=device, amp_dtype=amp_dtype,
                           channels_last=channels_last)
            test = classification_report(data.test.labels, pred, data.classes)

        with cost.phase("write"):  # the checkpoint, result, config and record
            state = cpu_state(res["model"])
            save_checkpoint(out / "best.pt", {
                "kind": "classifier", "name": c.name, "kwargs": kwargs, "state_dict": state,
                "optimizer": res["optimizer"], "step": res["best_step"], "rng": rng_state(), "config": to_dict(cfg),
                "data_fingerprint": data.fingerprint, "classes": data.classes,
            })
            result = {
                "arm": arm.name,
                "seed": seed,
                "gan_seed": (rep.seed if rep.seed is not None else cfg.gen(rep.generator).seed) if arm.uses_synthetic else None,
                "generator": rep.generator if arm.uses_synthetic else None,
                # Which synthetic set, relative to out_dir, so `compare` can audit it.
                "synthetic_set": p.relative(p.samples(rep)) if arm.uses_synthetic else None,
                "arm_config": to_dict(arm),
                "test": test,
                "val": {"accuracy": res["best_val_acc"], "selected_step": res["best_step"], "n": len(data.val.labels)},
                "budget": {"steps": c.steps, "batch_size": c.batch_size},
                "train_pool": {"real": int(batches.is_real.sum()), "synthetic": int((~batches.is_real).sum())
                               + (len(batches.fake_y) if batches.p_real is not None else 0)},
                "seen": res["seen"],
                # Counted where it happened: the images model selection scored, and how often the test set was read.
                "protocol": {"validation_hashes": res["val_hashes"], "test_evaluations": data.test.reads - test_reads},
                "data_fingerprint": data.fingerprint,
                "train_seconds": round(train_seconds, 2),
                # processes that trained it (not in the fingerprint: any number is the same run)
                "world_size": distributed.world(),
                "threads": torch.get_num_threads(),  # torch threads per process (executor.clf_threads; CPU numbers depend on it)
                # how it computed, as chosen for this device (amp, channels_last: auto resolves per device)
                "precision": "bfloat16" if amp_dtype is not None else "float32", "channels_last": channels_last,
            }
            if batches.soft_rows is not None:  # only then: results without soft labels stay as they were
                result["soft_labels"] = True
            atomic_write_json(out / "result.json", result)
            save_config(cfg, out / "config.yaml")
            write_record(out, "classifier", fp, config, started,
                         {"resumed_from_step": ckpt["step"] if ckpt is not None else None})
    distributed.barrier()  # the other ranks go on once the run is whole
    echo(f"train-clf {counter} {arm.name} seed {seed}: val {res['best_val_acc']:.4f} (step {res['best_step']}), "
         f"test acc {test['accuracy']:.4f}, macro-F1 {test['macro_f1']:.4f} in {train_seconds:.0f}s")
