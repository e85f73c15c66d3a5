"""What every executor shares: the cores it may use, the per-cell spec it sends, the extras it needs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


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
    return Path(out_dir) / "logs" / (re.sub(r"[^A-Za-z0-9._=+-]", "_", cell_id.replace("/", "__")) + ".log")


class Executor:
    """Submit cells, wait for some to finish, cancel the rest. Handles are whatever the engine returns."""

    name = "?"
    threads: Optional[int] = None

    def __init__(self, cfg: Any, progress: bool = False):
        self.cfg = cfg
        self.progress = progress

    def describe(self) -> str:
        return self.name

    def spec(self, cell: Any, force: bool) -> Dict[str, Any]:
        return {**cell.spec, "id": cell.id, "force": force, "threads": self.threads,
                "log": str(log_path(self.cfg.out_dir, cell.id).resolve())}

    def gpus(self, cell: Any) -> float:
        e = self.cfg.executor
        return e.clf_gpus if cell.kind == "train-clf" and e.clf_gpus is not None else e.gpus

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        raise NotImplementedError

    def wait(self, handles: List[Any]) -> List[Tuple[Any, Dict[str, Any]]]:
        """Block until at least one handle is finished; (handle, outcome) for each finished one."""
        raise NotImplementedError

    def cancel(self, handles: List[Any]) -> None:
        pass

    def close(self) -> None:
        pass
