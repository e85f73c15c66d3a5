"""`slurm`: cells as Slurm jobs through submitit; the cells ready at one time go out as one array job.

The run folder must be on a file system every compute node sees at the same path: cells read their inputs
from it and write their own folders into it; submitit's job files and logs go to <out_dir>/logs/slurm/.

Preemption and the time limit: Slurm sends SIGUSR2 shortly before (submitit's `--signal=USR2@90`); the training
loop finishes its step, saves a checkpoint and stops, and the job puts itself back in the queue (submitit's
checkpoint-and-requeue), so the cell resumes from that step when Slurm starts it again. The jobs' states come from
`squeue` (clusters without an accounting database answer no `sacct`): a job that leaves the queue without a result
(cancelled, killed over its memory limit, out of time, its node lost) fails its cell with one line saying why.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .base import Executor, need_extra, register_executor

# States of a job that has left the queue (squeue -t all shows them for MinJobAge seconds).
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "SPECIAL_EXIT", "REVOKED"}


class SlurmCell:
    """What each Slurm job runs: one cell (`worker_run`). Stopped by SIGUSR2 (Slurm's notice of preemption or of
    the time limit) after saving a checkpoint, it hands the signal back to submitit, which requeues the job with
    `checkpoint`'s resubmission: the same cell, resumed (never forced) from that checkpoint."""

    def __call__(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        from ..stages.cells import worker_run

        if spec.get("log") and os.environ.get("SLURM_JOB_ID"):
            with open(spec["log"], "a") as log:  # which job ran it, and which start (a requeued job starts again)
                print(f"# Slurm job {job_id()} start {int(os.environ.get('SLURM_RESTART_COUNT') or 0) + 1} on "
                      f"{os.uname().nodename}", file=log)
        out = worker_run(spec)
        if out.get("stopped_by") == "SIGUSR2" and os.environ.get("SLURM_JOB_ID"):
            signal.raise_signal(signal.SIGUSR2)  # submitit's handler again: checkpoint(), scontrol requeue, exit
        return out

    def checkpoint(self, spec: Dict[str, Any]) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, {**spec, "force": False})


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
        self._gone: Dict[str, int] = {}  # job id -> how many polls in a row it was out of the queue without a result

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[Optional[int], Optional[int], int]:
        return None, None, cfg.executor.threads or cfg.executor.cpus

    def gen_threads(self) -> int:
        return self.cfg.executor.threads or self.cfg.executor.cpus  # the nodes' cores, not the coordinator's

    def cpus(self, cell: Any) -> int:
        """cpus-per-task: executor.cpus, or the cell's threads where it has more; times its processes (executor.ddp:
        torchrun's processes share the job's one task, on one node)."""
        return max(self.cfg.executor.cpus, self.cell_threads(cell)) * self.processes(cell)

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
        jobs: Dict[str, Any] = {}
        groups: Dict[Tuple[float, int], List[Any]] = {}
        for c in cells:
            groups.setdefault((self.gpus(c), self.cpus(c)), []).append(c)
        for (gpus, cpus), group in groups.items():  # one array job per resource shape
            self.ex.update_parameters(**self.parameters(gpus, cpus))
            with self.ex.batch():
                made = [self.ex.submit(SlurmCell(), self.spec(c, force)) for c in group]
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
            finished = self._finished(handles)
            if finished:
                break
        return [(job, self._outcome(job, state)) for job, state in finished]

    def _finished(self, handles: List[Any]) -> List[Tuple[Any, Optional[str]]]:
        """The jobs that have a result, or have left the queue without one (with their last state)."""
        if self.ex.cluster != "slurm":
            return [(j, None) for j in handles if j.done()]
        done = [(j, None) for j in handles if j.paths.result_pickle.exists()]  # written before the job ends
        rest = [j for j in handles if not j.paths.result_pickle.exists()]
        states = _states([j.job_id for j in rest]) if rest else {}
        if states is None:  # squeue did not answer (the controller restarting): ask again next time
            return done
        for j in rest:
            state = states.get(j.job_id)
            if state is None or state.split()[0] in ENDED:
                self._gone[j.job_id] = self._gone.get(j.job_id, 0) + 1
                if self._gone[j.job_id] >= 2 and not j.paths.result_pickle.exists():  # twice: not a lagging file
                    done.append((j, state or "gone from the queue"))
            else:
                self._gone.pop(j.job_id, None)
        return done

    def _outcome(self, job: Any, state: Optional[str]) -> Dict[str, Any]:
        """The cell's outcome, its error said in Slurm's terms where Slurm ended it."""
        log = str(job.paths.stderr)
        if state is not None:
            out = {"ok": False, "error": None, "log": log, "seconds": 0.0}
        else:
            try:
                out = job.result()
            except Exception as e:  # noqa: BLE001 - the job failed outside the cell
                out = {"ok": False, "error": f"({type(e).__name__}: {' '.join(str(e).split())[:300]})", "log": log,
                       "seconds": 0.0}
        if out.get("ok"):
            return out
        sl = self.cfg.executor.slurm
        what = f"Slurm job {job.job_id}"
        # A requeued job's log holds its first start's "CANCELLED AT ... DUE TO JOB REQUEUE": not the user's scancel.
        text = "\n".join(line for line in _read(job.paths.stderr).splitlines() if "DUE TO JOB REQUEUE" not in line)
        if "exceeded memory limit" in text or "Exceeded job memory limit" in text or \
                (state or "").startswith("OUT_OF_MEMORY"):
            limit = f"{sl.mem_gb:g} GB" if sl.mem_gb is not None else "the cluster's default"
            out["error"] = (f"{what} went over its memory limit ({limit}, executor.slurm.mem_gb) and was killed; "
                            "raise executor.slurm.mem_gb and rerun")
        elif (state or "").startswith("TIMEOUT") or "DUE TO TIME LIMIT" in text:
            out["error"] = (f"{what} reached its time limit (executor.slurm.time_min: {sl.time_min}); rerun resumes "
                            "the cell from its last checkpoint, or raise executor.slurm.time_min")
        elif out.get("stopped_by") or (state or "").startswith("CANCELLED") or "CANCELLED" in text:
            saved = f" ({out['error']})" if out.get("error") else ""
            out["error"] = f"{what} was cancelled (scancel){saved}; rerun to redo the cell, from its checkpoint if saved"
        elif state is not None:
            out["error"] = f"{what} ended {state.split()[0]} without a result; see its log {log}"
        else:
            out["error"] = out.get("error") or f"{what} failed; see its log {log}"
        out["log"] = out.get("log") or log
        return out

    def cancel(self, handles: List[Any]) -> None:
        for job in handles:
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - already finished
                pass


def job_id() -> str:
    """This job's id as submitit and squeue name it: <array job>_<task> for an array task, else SLURM_JOB_ID."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def _states(job_ids: List[str]) -> Optional[Dict[str, str]]:
    """squeue's state of each job (array tasks one by one, ended jobs too while Slurm keeps them); None where squeue
    did not answer."""
    base = sorted({j.split("_")[0] for j in job_ids})
    try:
        r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(base)],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode and "Invalid job id" not in r.stderr:
        return None
    return dict(line.split("|", 1) for line in r.stdout.split("\n") if "|" in line)


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")[-20000:]
    except OSError:
        return ""
