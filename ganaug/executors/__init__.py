"""Executors: where an experiment's cells run. `serial` (here, one after another: the default), `local` (a pool
of processes on this machine), `ray` (a local Ray or a cluster's), `slurm` (jobs through submitit).

Each is a class registered with `@register_executor(name)` that submits cell specs and reports outcomes;
`run_graph` (scheduler.py) walks the graph with any of them.
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry

EXECUTORS = Registry("executor")


def register_executor(name: str, **meta: Any):
    return EXECUTORS.register(name, **meta)


def get_executor(cfg: Any, progress: bool = False) -> Any:
    """The config's executor, built (a missing extra is a one-line error here, before any cell runs)."""
    return EXECUTORS.get(cfg.executor.name, "config key 'executor.name'")(cfg, progress=progress)


from . import local, ray_executor, serial, slurm  # noqa: E402,F401  (registration)
from .scheduler import run_graph  # noqa: E402

__all__ = ["EXECUTORS", "get_executor", "register_executor", "run_graph"]
