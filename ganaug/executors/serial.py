"""`serial`: today's behaviour. Every cell here, one after another, errors raised as they happen."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

from . import register_executor
from .base import Executor


@register_executor("serial")
class SerialExecutor(Executor):
    """Every cell in this process, one after another (the default)."""

    name = "serial"

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        self.threads = cfg.executor.threads
        self._cells: Dict[str, Any] = {}
        self._saved_threads = None
        if self.threads:
            import torch

            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def describe(self) -> str:
        import torch

        return f"serial, {torch.get_num_threads()} torch threads"

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        self._force = force
        self._cells.update({c.id: c for c in cells})
        return [c.id for c in cells]  # run one by one in wait(), so a failure stops before the next starts

    def wait(self, handles: List[Any]) -> List[Tuple[Any, Dict[str, Any]]]:
        from ..stages.cells import run_cell

        cell = self._cells.pop(handles[0])
        started = time.time()
        run_cell(cell.spec, force=self._force, progress=self.progress)
        return [(cell.id, {"id": cell.id, "ok": True, "error": None, "log": None, "started": started,
                        "seconds": round(time.time() - started, 2)})]

    _force = False

    def close(self) -> None:
        if self._saved_threads is not None:
            import torch

            torch.set_num_threads(self._saved_threads)
