"""Executors: where an experiment's cells run. `serial` (here, one after another: the default), `local` (a pool
of processes on this machine), `ray` (a local Ray or a cluster's), `slurm` (jobs through submitit).

Each is a class registered with `@register_executor(name)` (base.py) that submits cell specs and reports outcomes;
`run_graph` (scheduler.py) walks the graph with any of them.
"""

from . import local, ray_executor, serial, slurm  # noqa: F401  (registration)
from .base import EXECUTORS, get_executor, register_executor
from .scheduler import run_graph

__all__ = ["EXECUTORS", "get_executor", "register_executor", "run_graph"]
