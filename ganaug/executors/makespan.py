"""The executor's parallelism, and the run's makespan: the cells scheduled as the executor runs them, as many at once
as their threads fit in its capacity (and its workers), each after its inputs, the critical path first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

from .base import EXECUTORS, admits, cell_cost


@dataclass
class Shape:
    """How an executor runs cells at once: `capacity` CPUs filled by each cell's threads (None: no limit, a cluster
    queues them), at most `slots` cells (serial 1, local its workers)."""

    name: str
    capacity: Optional[int]
    slots: Optional[int]
    gen_threads: int
    clf_threads: int

    @classmethod
    def of_config(cls, cfg: Any) -> "Shape":
        capacity, slots, gen = EXECUTORS.get(cfg.executor.name, "config key 'executor.name'").planned(cfg)
        return cls(cfg.executor.name, capacity, slots, gen, cfg.executor.clf_threads)

    @classmethod
    def of_executor(cls, ex: Any) -> "Shape":
        return cls(ex.name, ex.capacity, ex.slots, ex.gen_threads(), ex.cfg.executor.clf_threads)

    def threads(self, kind: str) -> int:
        return self.clf_threads if kind == "train-clf" else self.gen_threads

    def cost(self, kind: str) -> int:
        return cell_cost(self.threads(kind), self.capacity)

    def describe(self) -> str:
        if self.slots == 1:
            return f"{self.name}: one cell at a time"
        if not self.capacity:
            return f"{self.name}: every ready cell at once (the cluster's queue not counted)"
        gen, clf = self.cost("train-gan"), self.cost("train-clf")
        at_once = max(1, self.capacity // max(clf, 1))
        if self.slots:
            at_once = min(at_once, self.slots)
        gen_at_once = max(1, self.capacity // max(gen, 1))
        if self.slots:
            gen_at_once = min(gen_at_once, self.slots)
        return (f"{self.name}: {at_once} classifier cell(s) at a time on {self.capacity} cores"
                f"{f' ({self.slots} workers)' if self.slots else ''}, "
                f"other cells {'one' if gen_at_once == 1 else gen_at_once} at a time ({self.gen_threads} "
                f"thread{'s' if self.gen_threads > 1 else ''} each)")


def ranks(cells: List[Any], seconds: Dict[str, float]) -> Dict[str, float]:
    """Each cell's rank: its seconds plus the longest chain of seconds after it (its bottom level), so the cells of
    the critical path rank above the rest. Unknown seconds count as a millisecond, so the longest chain of cells
    goes first when no cell has an estimate."""
    after: Dict[str, List[str]] = {c.id: [] for c in cells}
    for c in cells:
        for d in c.deps:
            if d in after:
                after[d].append(c.id)
    rank: Dict[str, float] = {}

    def of(i: str) -> float:
        if i not in rank:
            rank[i] = max(seconds.get(i) or 0.0, 1e-3) + max((of(k) for k in after[i]), default=0.0)
        return rank[i]

    for c in reversed(cells):  # dependencies first in the graph: each cell's followers are ranked before it
        of(c.id)
    return rank


def enqueue(queue: List[Any], ready: List[Any], rank: Dict[str, float], index: Dict[str, int]) -> None:
    """Add the cells whose inputs are now done to the ready queue, which stays ordered by rank, highest first (the
    graph's order among equals): the scheduler's order, and the one `makespan` simulates."""
    queue.extend(ready)
    queue.sort(key=lambda c: (-rank.get(c.id, 0.0), index.get(c.id, 0)))


def makespan(cells: List[Any], seconds: Dict[str, float], shape: Shape, done: Iterable[str] = (),
             running: Optional[Dict[str, float]] = None, gone: Iterable[str] = ()) -> float:
    """Seconds until the last cell ends when the cells not `done` run as the scheduler runs them: once their inputs
    are done, highest rank first (`ranks`), while their threads fit the capacity (one always runs), at most `slots`
    at once. `running`: cells already running, with their seconds left; `gone`: failed cells (what needs them never
    runs)."""
    kind = {c.id: c.kind for c in cells}
    rank, index = ranks(cells, seconds), {c.id: n for n, c in enumerate(cells)}
    finished = set(done)
    gone = set(gone)
    active: Dict[str, float] = dict(running or {})
    used = sum(shape.cost(kind.get(i, "train-clf")) for i in active)
    pending = [c for c in cells if c.id not in finished and c.id not in active and c.id not in gone]
    queue: List[Any] = []
    now = 0.0
    while pending or queue or active:
        ready = [c for c in pending if all(d in finished for d in c.deps)]
        for c in ready:
            pending.remove(c)
        enqueue(queue, ready, rank, index)
        while queue:
            cost = shape.cost(queue[0].kind)
            if not admits(bool(active), used, cost, shape.capacity, len(active), shape.slots):
                break
            c = queue.pop(0)
            active[c.id] = now + max(0.0, seconds.get(c.id, 0.0))
            used += cost
        if not active:
            break  # what is left waits on a failed cell
        i = min(active, key=lambda k: active[k])
        now = active.pop(i)
        used -= shape.cost(kind.get(i, "train-clf"))
        finished.add(i)
    return now
