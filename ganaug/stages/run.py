"""Stage `run`: every cell of the experiment's graph, on the config's executor; finished cells with the same
config are skipped, interrupted training cells continue from their newest checkpoints."""

from __future__ import annotations

import time
from typing import List

from .. import memory
from ..config import Config
from .cells import build_graph, describe_graph, needs_gan
from .common import GAN, echo, paths, save_run_config, up_to_date
from .official import check_official_env
from .sweep import compare_all

__all__ = ["needs_gan", "plan", "run_all"]


def run_all(cfg: Config, force: bool = False, progress: bool = True) -> str:
    """split -> features -> train-gan -> sample -> evaluate (when an arm uses fakes) -> train-clf for every arm and
    seed, each a cell on the executor -> compare, here."""
    from ..executors import get_executor, run_graph

    started = time.time()
    cells = build_graph(cfg)
    for rep in cfg.replicates if needs_gan(cfg) else []:  # before any cell runs: the official code will have to train
        g = cfg.gen(rep.generator)
        if getattr(g, "impl", None) == "official" and (force or not up_to_date(cfg, GAN, rep)):
            check_official_env(g)
    executor = get_executor(cfg, progress=progress)  # a missing extra is said here, before anything is written
    run_graph(cfg, cells, executor, force=force)
    table = compare_all(cfg)
    save_run_config(cfg)
    echo(f"run: finished in {time.time() - started:.0f}s; table in {paths(cfg).compare}")
    return table


def plan(cfg: Config) -> List[str]:
    """What `run` would do, cell by cell: done, to run, resume (step N) or differs (another config's output)."""
    return describe_graph(cfg, build_graph(cfg)) + memory.plan_lines(cfg)
