"""`local`: a pool of worker processes on this machine (the standard library's, started with spawn)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Dict, List, Tuple

from . import register_executor
from .base import THREAD_VARS, Executor, available_cores


def _init_worker(threads: int) -> None:
    """In each worker, before any cell: its share of the cores, and Ctrl-C left to the cell's own handler (a cell
    that is training saves a checkpoint and stops; an idle worker ignores it and the coordinator cancels)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # pragma: no cover - already set
        pass


@register_executor("local")
class LocalExecutor(Executor):
    """executor.workers processes here; the scheduler keeps the threads of the cells running at once within the cores
    (two one-thread classifier runs side by side on 2 cores; a GAN of 2 threads alone)."""

    name = "local"

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        e = cfg.executor
        self.capacity = available_cores()
        self.workers = e.workers or max(1, self.capacity // e.clf_threads)
        threads = self.gen_threads()
        self._env = {v: os.environ.get(v) for v in THREAD_VARS}
        for v in THREAD_VARS:  # spawned workers inherit them before torch is imported; each cell then sets its own
            os.environ[v] = str(threads)
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(threads,))

    def describe(self) -> str:
        return f"local, {self.workers} worker processes on {self.capacity} cores, {self.threads_line()}"

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        from ..stages.cells import worker_run

        return [self.pool.submit(worker_run, self.spec(c, force)) for c in cells]

    def wait(self, handles: List[Any]) -> List[Tuple[Any, Dict[str, Any]]]:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for f in finished:
            try:
                out.append((f, f.result()))
            except Exception as e:  # noqa: BLE001 - a worker that died (killed, out of memory) breaks the pool
                out.append((f, {"ok": False, "error": f"the worker process died ({type(e).__name__}: {e})",
                                "log": None, "seconds": 0.0}))
        return out

    def cancel(self, handles: List[Any]) -> None:
        for f in handles:
            f.cancel()
        for proc in list(getattr(self.pool, "_processes", {}).values()):  # running cells: save and stop
            try:
                os.kill(proc.pid, signal.SIGINT)
            except OSError:
                pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for v, old in self._env.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old
