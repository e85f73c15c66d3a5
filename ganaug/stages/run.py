"""Stage `run`: every stage from one config; finished stages with the same config are skipped."""

from __future__ import annotations

import time
from typing import List

from ..checkpoint import RESUME_NAME, resume_files
from ..config import Config
from .common import (
    GAN,
    RESUME_DIR,
    SAMPLES,
    SPLIT,
    clf_fingerprint,
    echo,
    partial_of,
    paths,
    read_record,
    save_run_config,
    stage_fingerprint,
    up_to_date,
)
from .compare import run_compare
from .official import check_official_env
from .sample import run_sample
from .split import run_split
from .train_clf import run_train_clf
from .train_gan import run_train_gan


def needs_gan(cfg: Config) -> bool:
    return any(arm.uses_synthetic for arm in cfg.all_arms)


def run_all(cfg: Config, force: bool = False, progress: bool = True) -> str:
    """split -> train-gan -> sample (when an arm uses fakes) -> train-clf for every arm and seed -> compare.

    Interrupted training stages are continued from their newest checkpoints.
    """
    started = time.time()
    if needs_gan(cfg) and cfg.gan.impl == "official" and (
            force or not all(up_to_date(cfg, GAN, g) for g in cfg.gan_replicates)):
        check_official_env(cfg)  # before any stage writes: the official code will have to train
    run_split(cfg, force=force)
    if needs_gan(cfg):
        run_train_gan(cfg, force=force, progress=progress, resume=True)
        run_sample(cfg, force=force)
    run_train_clf(cfg, force=force, progress=progress, resume=True)
    table = run_compare(cfg)
    save_run_config(cfg)
    echo(f"run: finished in {time.time() - started:.0f}s; table in {paths(cfg).compare}")
    return table


def plan(cfg: Config) -> List[str]:
    """What `run` would do, stage by stage: run, skip (up to date) or blocked (another config's output)."""
    p = paths(cfg)

    def state(folder, fp) -> str:
        rec = read_record(folder)
        if rec is None:
            saved = resume_files(partial_of(folder) / RESUME_DIR)  # oldest first
            return f"resume (step {int(RESUME_NAME.match(saved[-1].name).group(1))})" if saved else "run"
        return "skip (up to date)" if rec.get("fingerprint") == fp else "differs: needs --force"

    lines = [f"plan for '{cfg.name}' in {p.root}:",
             f"  split      {state(p.split, stage_fingerprint(cfg, SPLIT)):24s} {cfg.data.source}, "
             f"{cfg.split.n_per_class or cfg.split.first_per_class or cfg.split.fraction or 100} train/class"]
    if needs_gan(cfg):
        for g in cfg.gan_replicates:
            tag = f" seed {g}" if g is not None else ""
            length = f"{cfg.gan.kimg:g} kimg" if cfg.gan.kimg else f"{cfg.gan.epochs} epochs"
            extra = f", augment {cfg.gan.augment}" if cfg.gan.augment not in (None, "none") else ""
            lines.append(f"  train-gan  {state(p.gan(g), stage_fingerprint(cfg, GAN, g)):24s} {cfg.gan.name}{tag}, "
                         f"{length}{extra}")
            lines.append(f"  sample     {state(p.samples(g), stage_fingerprint(cfg, SAMPLES, g)):24s} "
                         f"{cfg.sample.n_per_class}/class{tag}")
    for arm in cfg.all_arms:
        for seed in cfg.seeds:
            lines.append(f"  train-clf  {state(p.clf_run(arm.name, seed), clf_fingerprint(cfg, arm, seed)):24s} "
                         f"{arm.name} seed {seed}")
    lines.append("  compare    run")
    return lines
