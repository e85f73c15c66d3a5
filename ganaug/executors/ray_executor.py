"""`ray`: cells as Ray tasks, on a local Ray (executor.address unset) or a cluster's (`auto`, or ray://host:port).

Per-cell resources: as many CPUs as the cell has torch threads (on a cluster, executor.cpus for generator cells),
executor.gpus GPUs for generator cells and executor.clf_gpus (a fraction packs several classifier cells on one GPU)
for classifier cells. Every node must see the run folder at the same path (a shared file system) and have ganaug
installed.

A node that dies (its machine gone, its raylet killed) or a worker process killed under a cell is a system failure:
Ray runs the cell again on a node that is alive, up to `RayExecutor.retries` more times (a cell writes its folder
atomically under its lock, and a training cell resumes from its last checkpoint), and the coordinator prints one line
per node that died. A cell that fails in ganaug's code is not retried (worker_run returns its error). A cell whose
tries are spent fails alone, with one line naming the death and the rerun.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from ..progress import quiet
from .base import Executor, available_cores, default_threads, need_extra, register_executor


def ray_run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """worker_run on a Ray node: the `# cell` line at the head of the cell's log names the node."""
    import ray

    from ..stages.cells import worker_run

    return worker_run({**spec, "node": f" (Ray node {ray.get_runtime_context().get_node_id()})"})


@register_executor("ray")
class RayExecutor(Executor):
    """Ray tasks: a local Ray with executor.workers CPUs, or the cluster at executor.address."""

    name = "ray"
    retries = 2  # more tries of a cell whose worker or node died (Ray's max_retries; errors in a cell are not retried)

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
        self.task = ray.remote(ray_run)
        self.logs: Dict[Any, str] = {}  # task -> its cell's log file
        self.alive: Set[str] = set()  # the nodes seen alive, to tell of each that dies while the cells run
        self.checked = 0.0
        self.watch_nodes()

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
        """Ray's num_cpus for a cell: its threads here; on a cluster executor.cpus, or its threads where it has more;
        times its processes (executor.ddp: torchrun's processes run inside the one task, on one node)."""
        return self.cost(cell) or max(self.cfg.executor.cpus, self.cell_threads(cell)) * self.processes(cell)

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        handles = []
        for c in cells:
            spec = self.spec(c, force)
            ref = self.task.options(num_cpus=self.cpus(c), num_gpus=self.gpus(c), max_retries=self.retries).remote(spec)
            self.logs[ref] = spec["log"]
            handles.append(ref)
        return handles

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        end = None if timeout is None else time.time() + timeout
        while True:  # in short waits, to tell of a node that dies meanwhile
            step = 2.0 if end is None else max(0.0, min(2.0, end - time.time()))
            ready, _ = self.ray.wait(handles, num_returns=1, timeout=step)
            self.watch_nodes()
            if ready or (end is not None and time.time() >= end):
                break
        if not ready:
            return []
        more, _ = self.ray.wait([h for h in handles if h not in ready], num_returns=len(handles) - len(ready),
                                timeout=0) if len(handles) > len(ready) else ([], [])
        out = []
        for ref in list(ready) + list(more):
            log = self.logs.pop(ref, None)
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as e:  # noqa: BLE001 - a task whose worker or node died, its tries spent
                out.append((ref, {"ok": False, "error": self.failure(e), "log": log, "seconds": 0.0}))
        return out

    def failure(self, e: BaseException) -> str:
        """One line for a task Ray gave up on: what died, and what to do."""
        ex = self.ray.exceptions
        text = " ".join(str(e).split())
        tries = f"{self.retries + 1} tries" if self.retries else "no retries"
        rerun = "rerun the same command to redo only what is missing"
        if isinstance(e, ex.OutOfMemoryError):
            return (f"Ray's memory monitor killed its worker, out of memory ({tries}); give the cells more memory or "
                    f"run fewer at once, and {rerun}")
        if isinstance(e, (ex.NodeDiedError, ex.LocalRayletDiedError)):
            node = re.search(r"\b[0-9a-f]{56}\b", text)
            return f"the Ray node running it{f' ({node.group(0)[:12]})' if node else ''} died ({tries}); {rerun}"
        if isinstance(e, ex.WorkerCrashedError):
            return f"its Ray worker process died (killed, or out of memory; {tries}); {rerun}"
        return f"the Ray task failed ({type(e).__name__}: {text[:300]})"

    def watch_nodes(self) -> None:
        """A line for each node that died since the last look (at most once a second)."""
        now = time.time()
        if now - self.checked < 1.0:
            return
        self.checked = now
        try:
            nodes = self.ray.nodes()
        except Exception:  # noqa: BLE001 - the GCS busy or gone: the tasks' own outcomes say what happened
            return
        for n in nodes:
            node = n.get("NodeID", "?")
            if n.get("Alive"):
                self.alive.add(node)
            elif node in self.alive:
                self.alive.discard(node)
                then = (f"its cells run again on the other nodes (up to {self.retries} more tries each)" if self.retries
                        else "its cells fail (retries off)")
                if not quiet():
                    from tqdm import tqdm

                    tqdm.write(f"run: Ray node {node} ({n.get('NodeManagerAddress', '?')}) died; {then}", file=sys.stderr)

    def cancel(self, handles: List[Any]) -> None:
        for ref in handles:
            try:
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def close(self) -> None:
        self.checked = 0.0  # a last look: a node that died under cells that then finished on other nodes is told too
        self.watch_nodes()
        if self.started:
            self.ray.shutdown()
