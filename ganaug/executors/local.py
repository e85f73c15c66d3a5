"""`local`: worker processes on this machine (started with spawn), each running one cell at a time.

The coordinator hands each cell to a worker of its own choosing, so it always knows which cell a worker runs: a
worker that dies (the out-of-memory killer, a SIGKILL) fails that cell alone, with the signal that ended it, and a
new worker takes its place; the cells running in the other workers never notice. (The standard library's process
pool breaks as a whole when one of its workers dies, failing every cell it holds.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from typing import Any, Dict, List, Optional, Tuple

from .base import THREAD_VARS, Executor, available_cores, default_threads, register_executor


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


def _serve(conn: Connection, threads: int) -> None:
    """A worker's loop: a cell spec in, its outcome out, until None or the coordinator is gone."""
    _init_worker(threads)
    from ..stages.cells import worker_run

    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):  # the coordinator died: nothing to report to
            return
        if spec is None:
            return
        outcome = worker_run(spec)
        try:
            conn.send(outcome)
        except OSError:  # the coordinator died while the cell ran
            return


def death(exitcode: Optional[int]) -> str:
    """How a worker process ended, for people: 'killed by signal 9, SIGKILL: out of memory or killed'."""
    if exitcode is None:
        return "it closed its pipe and did not exit"
    if exitcode >= 0:
        return f"exit status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = "unknown signal"
    why = ": out of memory or killed" if -exitcode == signal.SIGKILL else ""
    return f"killed by signal {-exitcode}, {name}{why}"


class Task:
    """A handle: one cell's spec, when a worker took it, and its outcome once there is one."""

    def __init__(self, spec: Dict[str, Any]):
        self.spec = spec
        self.sent: Optional[float] = None
        self.outcome: Optional[Dict[str, Any]] = None

    def fail(self, error: str) -> None:
        started = self.sent or time.time()
        self.outcome = {"id": self.spec["id"], "ok": False, "error": error, "log": self.spec.get("log"),
                        "started": started, "seconds": round(time.time() - started, 2),
                        "threads": self.spec.get("threads")}


class Worker:
    """One spawned process and the duplex pipe the coordinator talks to it through; `task` is the cell it runs."""

    def __init__(self, ctx: Any, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, threads), name="ganaug-local-worker")
        self.process.start()
        child.close()  # the worker holds the only other end: its death reads as end-of-file here
        self.task: Optional[Task] = None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)


@register_executor("local")
class LocalExecutor(Executor):
    """executor.workers processes here; the scheduler keeps the threads of the cells running at once within the cores
    (two one-thread classifier runs side by side on 2 cores; a GAN of 2 threads alone)."""

    name = "local"

    def __init__(self, cfg: Any, progress: bool = False):
        super().__init__(cfg, progress)
        self.capacity, self.workers, self._threads = self.planned(cfg)
        self.slots = self.workers
        self._env = {v: os.environ.get(v) for v in THREAD_VARS}
        for v in THREAD_VARS:  # spawned workers inherit them before torch is imported; each cell then sets its own
            os.environ[v] = str(self._threads)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: List[Worker] = []  # started when first needed, replaced when one dies
        self._queue: List[Task] = []  # submitted, waiting for a free worker

    @classmethod
    def planned(cls, cfg: Any) -> Tuple[int, int, int]:
        e = cfg.executor
        cores = available_cores()
        return cores, e.workers or max(1, cores // e.clf_threads), e.threads or default_threads()

    def describe(self) -> str:
        return f"local, {self.workers} worker processes on {self.capacity} cores, {self.threads_line()}"

    def submit(self, cells: List[Any], force: bool) -> List[Any]:
        tasks = [Task(self.spec(c, force)) for c in cells]
        self._queue += tasks
        self._dispatch()
        return tasks

    def wait(self, handles: List[Any], timeout: Optional[float] = None) -> List[Tuple[Any, Dict[str, Any]]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = [t for t in handles if t.outcome is not None]
            if finished:
                return [(t, t.outcome) for t in finished]
            busy = [w for w in self._pool if w.task is not None]
            assert busy, "waiting on cells that no worker runs"
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            ready = wait_any([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=left)
            for w in busy:
                if w.conn in ready or w.process.sentinel in ready:
                    self._collect(w)
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand the queued cells to idle workers, starting workers up to executor.workers."""
        while self._queue:
            w = next((w for w in self._pool if w.task is None), None)
            if w is None:
                if len(self._pool) >= self.workers:
                    return
                w = Worker(self._ctx, self._threads)
                self._pool.append(w)
            task = self._queue[0]
            try:
                if not w.process.is_alive():
                    raise BrokenPipeError
                w.conn.send(task.spec)
            except OSError:  # it died while idle: the cell was not sent; a new worker takes it
                self._drop(w)
                continue
            self._queue.pop(0)
            task.sent = time.time()
            w.task = task

    def _collect(self, w: Worker) -> None:
        """The outcome a worker sent, or, where it died first, a failure of its cell alone naming how it died."""
        task, w.task = w.task, None
        assert task is not None
        outcome = None
        with contextlib.suppress(EOFError, OSError):
            if w.conn.poll():  # an outcome sent just before dying still counts
                outcome = w.conn.recv()
        if outcome is not None:
            task.outcome = outcome
            return
        w.process.join(10)
        task.fail(f"its worker process died ({death(w.process.exitcode)})")
        self._drop(w)

    def _drop(self, w: Worker) -> None:
        """Forget a dead worker (one that closed its pipe without exiting is killed)."""
        self._pool.remove(w)
        w.process.join(10)
        if w.process.exitcode is None:
            w.process.kill()
            w.process.join()
        w.conn.close()

    def cancel(self, handles: List[Any]) -> None:
        for t in [t for t in self._queue if t in handles]:  # never started: they never will
            self._queue.remove(t)
            t.fail("cancelled")
        for w in self._pool:  # running cells: save and stop
            if w.task is not None:
                with contextlib.suppress(OSError):
                    os.kill(w.process.pid, signal.SIGINT)

    def close(self) -> None:
        """Let the running cells end (a cancelled one saves its checkpoint first), then stop every worker; a second
        Ctrl-C while waiting stops them at once."""
        self._queue.clear()
        try:
            for w in self._pool:
                w.stop()
            for w in self._pool:
                w.process.join()
        except KeyboardInterrupt:
            for w in self._pool:
                w.process.terminate()
            raise
        finally:
            for w in self._pool:
                w.conn.close()
            self._pool = []
            for v, old in self._env.items():
                if old is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = old
