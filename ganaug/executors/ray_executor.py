"""`ray`: cells as Ray tasks, on a local Ray (executor.address unset) or a cluster's (`auto`, or ray://host:port).

Per-cell resources: as many CPUs as the cell has torch threads (on a cluster, executor.cpus for generator cells),
executor.gpus GPUs for generator cells and executor.clf_gpus (a fraction packs several classifier cells on one GPU)
for classifier cells. Every node must see the run folder at the same path (a shared file system) and have ganaug
installed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .base import Executor, available_cores, default_threads, need_extra, register_executor


@register_executor("ray")
class RayExecutor(Executor):
    """Ray tasks: a local Ray with executor.workers CPUs, or the cluster at executor.address."""

    name = "ray"

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        self.ray = ray = need_extra("ray", "ray", "ray")
        e = cfg.executor
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if e.address:
                ray.init(address=e.address, **kwargs)
            else:
                ray.init(num_cpus=e.workers or available_cores(), **kwargs)
        if not e.address:  # here: the scheduler keeps the cells' threads within the local Ray's CPUs
            self.capacity = int(ray.cluster_resources().get("CPU", 1))
        from ..stages.cells import worker_run

        self.task = ray.remote(worker_run)

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[Optional[int], Optional[int], int]:
        e = cfg.executor
        if e.address:  # a cluster queues the cells itself; its nodes' cells get executor.cpus threads
            return None, None, e.threads or e.cpus
        return e.workers or available_cores(), None, e.threads or default_threads()

    def gen_threads(self) -> int:
        e = self.cfg.executor
        return e.threads or (super().gen_threads() if self.capacity else e.cpus)  # a cluster's nodes: executor.cpus

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        where = self.cfg.executor.address or "a local Ray"
        return f"ray ({where}: {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs), {self.threads_line()}"

    def cpus(self, cell: Any) -> float:
        """Ray's num_cpus for a cell: its threads here; on a cluster executor.cpus, or its threads where it has more."""
        return self.cost(cell) or max(self.cfg.executor.cpus, self.cell_threads(cell))

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        return [self.task.options(num_cpus=self.cpus(c), num_gpus=self.gpus(c), max_retries=0).remote(self.spec(c, force))
                for c in cells]

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if not ready:
            return []
        more, _ = self.ray.wait([h for h in handles if h not in ready], num_returns=len(handles) - len(ready),
                                timeout=0) if len(handles) > len(ready) else ([], [])
        out = []
        for ref in list(ready) + list(more):
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - a task whose worker died
                out.append((ref, {"ok": False, "error": f"the Ray task failed ({type(e).__name__}: "
                                                      f"{' '.join(str(e).split())[:300]})", "log": None, "seconds": 0.0}))
        return out

    def cancel(self, handles: List[Any]) -> None:
        for ref in handles:
            try:
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
