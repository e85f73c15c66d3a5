"""What every executor shares: the registry it joins, the cores it may use, the per-cell spec it sends, the extras it
needs."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError
from ..progress import file_stem, progress_path, quiet
from ..registry import Registry

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

EXECUTORS = Registry("executor")


def register_executor(name: str, **meta: Any):
    return EXECUTORS.register(name, **meta)


def get_executor(cfg: Any, progress: bool = False) -> Any:
    """The config's executor, built (a missing extra is a one-line error here, before any cell runs)."""
    return EXECUTORS.get(cfg.executor.name, "config key 'executor.name'")(cfg, progress=progress)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def default_threads() -> int:
    """torch's thread count in this process before ganaug changed it (taken the first time it is asked)."""
    import torch

    return torch.get_num_threads()


def need_extra(module: str, extra: str, executor: str) -> Any:
    """Import an optional dependency, or the one-line error naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"executor '{executor}' needs {module}, which is not installed; "
                          f"pip install 'ganaug[{extra}]' (or set executor.name: serial)") from None


def log_path(out_dir: str, cell_id: str) -> Path:
    """<out_dir>/logs/<cell id with / as __>.log"""
    return Path(out_dir) / "logs" / (file_stem(cell_id) + ".log")


def cell_cost(threads: int, capacity: Optional[int]) -> int:
    """The CPUs the scheduler counts for a cell while it runs: its threads, at most the capacity (so a wide cell
    still runs, alone); 0 where the engine queues cells itself (no capacity)."""
    return min(threads, capacity) if capacity else 0


def admits(busy: bool, used: int, cost: int, capacity: Optional[int], running: int = 0,
           slots: Optional[int] = None) -> bool:
    """Whether the next ready cell starts now: always when nothing else runs or starts; else when its cost fits the
    capacity beside the `used` CPUs and (where the executor has `slots`) a slot is free. The scheduler's rule, and
    the one `--dry-run`'s time estimate simulates."""
    if not busy:
        return True
    return not (capacity and used + cost > capacity) and not (slots and running >= slots)


class Executor:
    """Submit cells, wait for some to finish, cancel the rest. Handles are whatever the engine returns."""

    name = "?"
    # CPUs the scheduler fills at once (each cell costs its threads); None: the engine queues cells itself (a cluster)
    capacity: Optional[int] = None
    slots: Optional[int] = None  # cells that run at once at most, whatever their threads (serial 1; local its workers)
    feeds_progress = True  # the cells run in workers that write progress files (serial: its own bars, here)

    def __init__(self, cfg: Any, progress: bool = False):
        self.cfg = cfg
        self.progress = progress

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[Optional[int], Optional[int], int]:
        """(capacity, slots, threads of a generator cell) this executor would have for `cfg`, without starting
        anything: what `--dry-run`'s time estimate schedules the cells with."""
        return None, None, cfg.executor.threads or default_threads()

    def describe(self) -> str:
        return self.name

    def gen_threads(self) -> int:
        """Torch threads of the cells that are not classifier runs: executor.threads, or torch's default here (this
        machine's cores, or OMP_NUM_THREADS), which is what `ganaug train-gan` run by hand uses."""
        return self.cfg.executor.threads or default_threads()

    def cell_threads(self, cell: Any) -> int:
        """A cell's torch threads, fixed by the config, not by the executor: the same numbers wherever it runs."""
        return self.cfg.executor.clf_threads if cell.kind == "train-clf" else self.gen_threads()

    def threads_line(self) -> str:
        return f"{self.gen_threads()} torch thread(s) per generator cell, {self.cfg.executor.clf_threads} per classifier cell"

    def processes(self, cell: Any) -> int:
        """How many processes a cell runs on: executor.ddp for a generator-training cell (torchrun), else 1."""
        return self.cfg.executor.ddp if cell.kind == "train-gan" else 1

    def cost(self, cell: Any) -> int:
        """The CPUs the scheduler counts for a cell while it runs (see `cell_cost`): its threads on each process."""
        return cell_cost(self.cell_threads(cell) * self.processes(cell), self.capacity)

    def spec(self, cell: Any, force: bool) -> Dict[str, Any]:
        """What a worker gets: the cell's spec, its threads, its log file and its progress file (none under --quiet)."""
        feed = None if quiet() else str(progress_path(self.cfg.out_dir, cell.id).resolve())
        return {**cell.spec, "id": cell.id, "force": force, "threads": self.cell_threads(cell),
                "log": str(log_path(self.cfg.out_dir, cell.id).resolve()), "progress": feed}

    def gpus(self, cell: Any) -> float:
        e = self.cfg.executor
        return e.clf_gpus if cell.kind == "train-clf" and e.clf_gpus is not None else e.gpus * self.processes(cell)

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        raise NotImplementedError

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        """Block until at least one handle is finished, or `timeout` seconds have passed (then nothing: the caller
        redraws its progress and waits again); (handle, outcome) for each finished one."""
        raise NotImplementedError

    def cancel(self, handles: List[Any]) -> None:
        pass

    def close(self) -> None:
        pass
