"""Stage `run`: every stage from one config; finished stages with the same config are skipped."""

from __future__ import annotations

import time
from typing import List

from .. import memory
from ..checkpoint import RESUME_NAME, resume_files
from ..config import Config
from .common import (
    EVALUATE,
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
from .evaluate import run_evaluate
from .official import check_official_env
from .quality import rep_tag
from .sample import run_sample
from .split import run_split
from .sweep import compare_all, experiments
from .train_clf import run_train_clf
from .train_gan import run_train_gan


def needs_gan(cfg: Config) -> bool:
    return any(arm.uses_synthetic for arm in cfg.all_arms)


def run_all(cfg: Config, force: bool = False, progress: bool = True) -> str:
    """split -> train-gan -> sample -> evaluate (when an arm uses fakes) -> train-clf for every arm and seed -> compare.

    Interrupted training stages are continued from their newest checkpoints.
    """
    started = time.time()
    for rep in cfg.replicates if needs_gan(cfg) else []:  # before any stage writes: the official code will have to train
        g = cfg.gen(rep.generator)
        if getattr(g, "impl", None) == "official" and (force or not up_to_date(cfg, GAN, rep)):
            check_official_env(g)
    made = set()
    for sub in experiments(cfg):  # the config, or each value of its experiment sweep
        if paths(sub).up not in made:  # sub-experiments that share their parent's split and GAN make them once
            made.add(paths(sub).up)
            run_split(sub, force=force, progress=progress)
            # What the later stages will take, now: an absurd count stops here, before the GAN trains.
            later = ["sample"] + (["evaluate"] if sub.evaluate.enabled else []) if needs_gan(sub) else []
            for stage in later + ["train-clf"]:
                memory.check(sub, stage)
            if needs_gan(sub):
                run_train_gan(sub, force=force, progress=progress, resume=True)
                run_sample(sub, force=force)
                if sub.evaluate.enabled:
                    run_evaluate(sub, force=force)
        run_train_clf(sub, force=force, progress=progress, resume=True)
    table = compare_all(cfg)
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

    lines = [f"plan for '{cfg.name}' in {p.root}:"]
    made = set()
    for sub in experiments(cfg):
        sp = paths(sub)
        tag = f" [{sub.out_dir}]" if sub is not cfg else ""
        if sp.up not in made:
            made.add(sp.up)
            lines.append(f"  split      {state(sp.split, stage_fingerprint(sub, SPLIT)):24s} {sub.data.source}, "
                         f"{sub.split.n_per_class or sub.split.first_per_class or sub.split.fraction or 100} train/class")
            if needs_gan(sub):
                for rep in sub.replicates:
                    g = sub.gen(rep.generator)
                    gtag = rep_tag(rep)
                    length = f"{g.kimg:g} kimg" if g.kimg else f"{g.epochs} epochs"
                    extra = f", augment {g.augment}" if getattr(g, "augment", None) not in (None, "none") else ""
                    lines.append(f"  train-gan  {state(sp.gan(rep), stage_fingerprint(sub, GAN, rep)):24s} {g.name}{gtag}, "
                                 f"{length}{extra}")
                    lines.append(f"  sample     {state(sp.samples(rep), stage_fingerprint(sub, SAMPLES, rep)):24s} "
                                 f"{sub.sample.n_per_class}/class{gtag}")
                    if sub.evaluate.enabled:
                        lines.append(f"  evaluate   {state(sp.evaluate(rep), stage_fingerprint(sub, EVALUATE, rep)):24s} "
                                     f"{sub.evaluate.features} features{gtag}")
        for arm in sub.all_arms:
            for seed in sub.seeds:
                lines.append(f"  train-clf  {state(sp.clf_run(arm.name, seed), clf_fingerprint(sub, arm, seed)):24s} "
                             f"{arm.name} seed {seed}{tag}")
    lines.append("  compare    run" + (f" (each of {len(experiments(cfg))} sub-experiments, then the summary)"
                                       if cfg.experiment_sweep else ""))
    return lines + memory.plan_lines(cfg)
