"""`slurm`: cells as Slurm jobs through submitit; the cells ready at one time go out as one array job.

The run folder must be on a file system every compute node sees at the same path: cells read their inputs
from it and write their own folders into it; submitit's job files and logs go to <out_dir>/logs/slurm/.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Tuple

from .base import Executor, need_extra, register_executor


@register_executor("slurm")
class SlurmExecutor(Executor):
    """Slurm array jobs via submitit (executor.slurm: partition, time, GPUs, memory, setup lines)."""

    name = "slurm"

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        self.submitit = need_extra("submitit", "slurm", "slurm")
        from pathlib import Path

        e = cfg.executor
        self.folder = (Path(cfg.out_dir) / "logs" / "slurm").resolve()
        self.ex = self.submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=e.slurm.cluster)
        self._checked = 0.0  # when the jobs' states were last asked for (time.monotonic)

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[Optional[int], Optional[int], int]:
        return None, None, cfg.executor.threads or cfg.executor.cpus

    def gen_threads(self) -> int:
        return self.cfg.executor.threads or self.cfg.executor.cpus  # the nodes' cores, not the coordinator's

    def cpus(self, cell: Any) -> int:
        """cpus-per-task: executor.cpus, or the cell's threads where it has more."""
        return max(self.cfg.executor.cpus, self.cell_threads(cell))

    def parameters(self, gpus: float, cpus: int) -> Dict[str, Any]:
        """submitit's parameters for a job of cells that each want `cpus` CPUs and `gpus` GPUs."""
        sl = self.cfg.executor.slurm
        params: Dict[str, Any] = {"name": "ganaug", "timeout_min": sl.time_min, "cpus_per_task": cpus,
                                  "tasks_per_node": 1, "nodes": 1}
        n_gpus = sl.gpus_per_node if sl.gpus_per_node is not None else int(math.ceil(gpus))
        if n_gpus:
            params["gpus_per_node"] = n_gpus
        if sl.mem_gb is not None:
            params["mem_gb"] = sl.mem_gb
        for key in ("partition", "account", "qos"):
            if getattr(sl, key) is not None:
                params[f"slurm_{key}"] = getattr(sl, key)
        if sl.setup:
            params["slurm_setup"] = list(sl.setup)
        if sl.array_parallelism is not None:
            params["slurm_array_parallelism"] = sl.array_parallelism
        return params

    def describe(self) -> str:
        return f"slurm through submitit ({self.ex.cluster}), jobs in {self.folder}, {self.threads_line()}"

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        from ..stages.cells import worker_run

        jobs: Dict[str, Any] = {}
        groups: Dict[Tuple[float, int], List[Any]] = {}
        for c in cells:
            groups.setdefault((self.gpus(c), self.cpus(c)), []).append(c)
        for (gpus, cpus), group in groups.items():  # one array job per resource shape
            self.ex.update_parameters(**self.parameters(gpus, cpus))
            with self.ex.batch():
                made = [self.ex.submit(worker_run, self.spec(c, force)) for c in group]
            jobs.update({c.id: j for c, j in zip(group, made)})
        return [jobs[c.id] for c in cells]

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        poll = self.cfg.executor.slurm.poll_seconds if self.ex.cluster == "slurm" else 0.2
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # The jobs are asked about every poll_seconds, however often the caller wakes to read the progress files.
            wait_more = self._checked + poll - time.monotonic()
            left = None if deadline is None else deadline - time.monotonic()
            if wait_more > 0:
                if left is not None and left <= wait_more:
                    time.sleep(max(0.0, left))
                    return []
                time.sleep(wait_more)
            self._checked = time.monotonic()
            finished = [j for j in handles if j.done()]
            if finished:
                break
        out = []
        for job in finished:
            try:
                out.append((job, job.result()))
            except Exception as e:  # noqa: BLE001 - the job failed outside the cell (time limit, node failure)
                out.append((job, {"ok": False, "error": f"Slurm job {job.job_id} failed ({type(e).__name__}: "
                                                      f"{' '.join(str(e).split())[:300]})",
                                  "log": str(job.paths.stderr), "seconds": 0.0}))
        return out

    def cancel(self, handles: List[Any]) -> None:
        for job in handles:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - already finished
                pass
