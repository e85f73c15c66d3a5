"""`serial`: today's behaviour. Every cell here, one after another, errors raised as they happen."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from .base import Executor, default_threads, register_executor


@register_executor("serial")
class SerialExecutor(Executor):
    """Every cell in this process, one after another (the default)."""

    name = "serial"
    slots = 1
    feeds_progress = False  # the cells' own tqdm bars show here, as they always did

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[Optional[int], Optional[int], int]:
        return None, 1, cfg.executor.threads or default_threads()

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        self._cells: Dict[str, Any] = {}

    def describe(self) -> str:
        return f"serial, {self.threads_line()}"

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        self._force = force
        self._cells.update({c.id: c for c in cells})
        return [c.id for c in cells]  # run one by one in wait(), so a failure stops before the next starts

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        from ..stages.cells import run_cell
        from ..utils import torch_threads

        cell = self._cells.pop(handles[0])
        started = time.time()
        with torch_threads(self.cell_threads(cell)) as threads:
            spent = run_cell(cell.spec, force=self._force, progress=self.progress)
        return [(cell.id, {"id": cell.id, "ok": True, "error": None, "log": None, "started": started,
                        "seconds": round(time.time() - started, 2), "threads": threads, "cost": spent})]

    _force = False
