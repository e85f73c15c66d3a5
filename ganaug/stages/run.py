"""Stage `run`: every cell of the experiment's graph, on the config's executor; finished cells with the same
config are skipped, interrupted training cells continue from their newest checkpoints."""

from __future__ import annotations

import time
from typing import Any, List, Optional

from .. import memory
from ..config import Config
from ..progress import echo, quiet
from .cells import build_graph, describe_graph, needs_gan
from .layout import paths
from .official import check_official_env
from .records import GAN, save_run_config, up_to_date
from .sweep import compare_all

__all__ = ["needs_gan", "plan", "run_all"]


def run_all(cfg: Config, force: bool = False, progress: bool = True) -> str:
    """split -> features -> train-gan -> sample -> evaluate (when an arm uses fakes) -> train-clf for every arm and
    seed, each a cell on the executor -> compare, here."""
    from ..executors import get_executor, run_graph
    from . import ddp_cell  # (imported here: torchrun runs it as a module)

    started = time.time()
    cells = build_graph(cfg)
    for rep in cfg.replicates if needs_gan(cfg) else []:  # before any cell runs: the official code will have to train
        g = cfg.gen(rep.generator)
        if getattr(g, "impl", None) == "official" and (force or not up_to_date(cfg, GAN, rep)):
            check_official_env(g)
        if cfg.executor.ddp > 1:  # a generator that cannot train on executor.ddp processes: said before any cell
            ddp_cell.check(cfg, rep)
    executor = get_executor(cfg, progress=progress)  # a missing extra is said here, before anything is written
    try:
        expected = _expected(cfg, cells, executor, force)
    except BaseException:  # Ctrl-C during the benchmark: the executor (a local Ray) goes too
        executor.close()
        raise
    run_graph(cfg, cells, executor, force=force, plan=expected)
    table = compare_all(cfg)
    save_run_config(cfg)
    echo(f"run: finished in {time.time() - started:.0f}s; table in {paths(cfg).compare}")
    return table


def _expected(cfg: Config, cells: List[Any], executor: Any, force: bool) -> Optional[Any]:
    """The time estimate `run` prints before it starts (and the display's first source of time left); none under
    --quiet, or when a cell made by another config will stop the run anyway."""
    from ..executors.estimate import estimate
    from ..executors.makespan import Shape

    if quiet():
        return None
    states = {c.id: c.state(force) for c in cells}
    if "differs" in states.values():
        return None
    try:
        expected = estimate(cfg, cells, states, Shape.of_executor(executor))
    except Exception as e:  # noqa: BLE001 - an estimate never stops a run
        echo(f"run: no time estimate ({type(e).__name__}: {e})")
        return None
    echo(f"run: estimate {expected.line()}")
    return expected


def plan(cfg: Config) -> List[str]:
    """What `run` would do, cell by cell: done, to run, resume (step N) or differs (another config's output), with
    each cell's time and the run's (from this run folder's records, else a benchmark here)."""
    from ..executors.estimate import estimate

    cells = build_graph(cfg)
    try:
        expected = estimate(cfg, cells, {c.id: c.state() for c in cells})
    except Exception as e:  # noqa: BLE001 - the plan is shown without times rather than not at all
        return (describe_graph(cfg, cells) + [f"  time       no estimate ({type(e).__name__}: {e})"]
                + memory.plan_lines(cfg, paths(cfg)))
    return (describe_graph(cfg, cells, estimates=expected.cells) + [f"  time       {expected.line()}"]
            + memory.plan_lines(cfg, paths(cfg)))
