"""Walk an experiment's graph with an executor: submit each cell once its inputs are done, report failures with
their log files while the others go on, skip what depends on a failure, cancel what is pending on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from .. import progress
from ..cost import total as total_cost
from ..errors import StageError
from ..provenance import environment
from ..utils import atomic_write_json
from .base import admits
from .estimate import Eta, Plan
from .makespan import Shape, enqueue, ranks


class Watch:
    """What people see while the graph runs: the display (a bar per running cell, fed by the workers' progress files,
    and the run's), and the time left on every line that says a cell finished."""

    def __init__(self, cfg: Any, cells: List[Any], executor: Any, total: int, display: Any = "auto",
                 plan: Optional[Plan] = None):
        self.out_dir = cfg.out_dir
        self.feed = getattr(executor, "feeds_progress", False) and not progress.quiet()  # workers write progress files
        if display == "auto":
            display = progress.Display(total) if self.feed and getattr(executor, "progress", False) else None
        elif display is not None and hasattr(display, "begin"):
            display.begin(total)
        self.display = display
        cfg_ex = getattr(getattr(executor, "cfg", None), "executor", None)
        shape = Shape(getattr(executor, "name", "?"), executor.capacity, getattr(executor, "slots", None),
                      executor.gen_threads() if hasattr(executor, "gen_threads") else 1,
                      cfg_ex.clf_threads if cfg_ex is not None else 1)
        self.eta = Eta(cells, shape, plan)
        self.records: Dict[str, Optional[Dict[str, Any]]] = {}
        self.since: Dict[str, float] = {}
        # With a display, wait() wakes this often to redraw it; without one it blocks until a cell ends, as always.
        self.poll = max(0.05, min(1.0, progress.seconds_between_writes())) if display is not None else None

    def say(self, msg: str, always: bool = False) -> None:
        if self.display is not None:
            self.display.write(msg)
        elif always and progress.quiet():
            print(msg, file=sys.stderr, flush=True)
        else:
            progress.echo(msg)

    def submitting(self, cells: List[Any]) -> None:
        """Before a cell goes out: forget a progress file an earlier run of it left."""
        for c in cells:
            if self.feed:
                with contextlib.suppress(OSError):
                    progress.progress_path(self.out_dir, c.id).unlink()

    def started(self, c: Any) -> None:
        self.since[c.id] = time.time()
        self.records[c.id] = None
        if self.display is not None:
            self.display.start(c.id, c.label, self.eta.cell(c).seconds)

    def read(self, c: Any) -> Optional[Dict[str, Any]]:
        """The cell's progress record, as its worker last wrote it (files of earlier runs were removed at submit)."""
        rec = progress.read(progress.progress_path(self.out_dir, c.id)) if self.feed else None
        if rec is not None:
            self.records[c.id] = rec
        return self.records.get(c.id)

    def refresh(self, running: List[Any], done: Set[str], gone: Set[str]) -> None:
        """Read the running cells' progress files and redraw."""
        for c in running:
            rec = self.read(c)
            if self.display is not None:
                self.display.update(c.id, rec)
        if self.display is not None:
            self.display.set_eta(self.left(running, done, gone))

    def finished(self, c: Any, outcome: Dict[str, Any]) -> None:
        rec = self.read(c)
        if self.display is not None:
            self.display.update(c.id, rec)
            self.display.finish(c.id)
        if outcome.get("ok"):
            self.eta.finished(c, outcome.get("seconds"))
        self.records.pop(c.id, None)

    def left(self, running: List[Any], done: Set[str], gone: Set[str]) -> str:
        now = time.time()
        return self.eta.text(done, {c.id: (now - self.since.get(c.id, now), self.records.get(c.id)) for c in running},
                             gone)

    def steps(self, c: Any) -> Optional[float]:
        return self.eta.steps.get(c.id)

    def close(self) -> None:
        if self.display is not None:
            self.display.close()
            self.display = None


def run_graph(cfg: Any, cells: List[Any], executor: Any, force: bool = False, display: Any = "auto",
              plan: Optional[Plan] = None) -> Dict[str, Any]:
    """Run every cell that is not done; returns the timings written to <out_dir>/logs/run.json.

    A finished cell made by another config stops everything before any work (it needs --force), as each stage does.
    `display`: the live view ("auto": tqdm bars on stderr when the executor was asked for progress and its workers
    feed it; None: none; or an object with Display's methods); `plan`: the estimate the run started with, the time
    left's first source.
    """
    states = {c.id: c.state(force) for c in cells}
    for c in cells:
        if states[c.id] == "differs":
            c.check(force)  # raises the stage's own error, naming the folder and what changed
    done = {i for i, s in states.items() if s == "done"}
    todo = [c for c in cells if c.id not in done]
    total = len(todo)
    failed: Dict[str, Dict[str, Any]] = {}
    skipped: Dict[str, str] = {}
    running: Dict[Any, Any] = {}
    queue: List[Any] = []  # ready, not yet submitted, the critical path first (the order `makespan` simulates)
    estimated = {i: g.seconds or 0.0 for i, g in plan.cells.items()} if plan is not None else {}
    rank, index = ranks(cells, estimated), {c.id: n for n, c in enumerate(cells)}
    used = 0  # CPUs held by the running cells, where the executor has a capacity
    timings: List[Dict[str, Any]] = []
    started = time.time()
    described = executor.describe()
    progress.echo(f"run: {len(cells)} cells, {len(done)} done, {total} to run; executor {described}")
    watch = Watch(cfg, cells, executor, total, display, plan)
    say = watch.say
    try:
        while todo or queue or running:
            now_ready = []
            for c in list(todo):
                bad = [d for d in c.deps if d in failed or d in skipped]
                if bad:
                    skipped[c.id] = bad[0]
                    todo.remove(c)
                elif all(d in done for d in c.deps):
                    now_ready.append(c)
                    todo.remove(c)
            enqueue(queue, now_ready, rank, index)
            ready = []
            while queue:  # as many as fit in the capacity; one always runs (a cell as wide as the machine runs alone)
                cost = executor.cost(queue[0])
                if not admits(bool(running or ready), used, cost, executor.capacity):
                    break
                ready.append(queue.pop(0))
                used += cost
            if ready:
                submitted = time.time()
                watch.submitting(ready)
                for c, h in zip(ready, executor.submit(ready, force)):
                    running[h] = (c, submitted)
                    watch.started(c)
            if not running:
                break
            if watch.poll is None:
                finished = executor.wait(list(running))
            else:  # wake to redraw the display while the cells run
                finished = executor.wait(list(running), timeout=watch.poll)
                watch.refresh([c for c, _ in running.values()], done, set(failed) | set(skipped))
            for h, outcome in finished:
                c, submitted = running.pop(h)
                used -= executor.cost(c)
                n = len(done) - (len(cells) - total) + len(failed) + 1
                timings.append({"id": c.id, "kind": c.kind, "ok": bool(outcome.get("ok")),
                                "submitted": outcome.get("started") or submitted,
                                "finished": time.time(), "seconds": outcome.get("seconds"),
                                "threads": outcome.get("threads"), "steps": watch.steps(c),
                                "cost": outcome.get("cost")})
                watch.finished(c, outcome)
                if outcome.get("ok"):
                    done.add(c.id)
                    for other, _ in running.values():
                        watch.read(other)
                    left = watch.left([o for o, _ in running.values()], done, set(failed) | set(skipped))
                    say(f"run: [{n}/{total}] done {c.label} in {outcome.get('seconds', 0):.0f}s"
                        + (f"; {left}" if left and n < total else ""))
                    if watch.display is not None:
                        watch.display.set_eta(left)
                else:
                    failed[c.id] = outcome
                    say(f"run: [{n}/{total}] FAILED {c.label}: {outcome.get('error')}"
                        + (f" (log: {outcome['log']})" if outcome.get("log") else ""), always=True)
    except KeyboardInterrupt:
        say(f"run: interrupted; cancelling {len(todo) + len(queue)} pending cell(s), stopping {len(running)} running")
        executor.cancel(list(running))
        raise
    finally:
        watch.close()
        executor.close()
        record = {"executor": described, "threads": executor.threads_line(), "wall_seconds": round(time.time() - started, 2),
                  "cells": timings, "phases": _phases(timings),
                  "cost": total_cost(t.get("cost") for t in timings),  # the cells' costs summed (their peaks: the largest)
                  "environment": environment()}  # the coordinator's
        if timings:
            atomic_write_json(Path(cfg.out_dir) / "logs" / "run.json", record)
    if failed or skipped:
        first_id, first = next(iter(failed.items())) if failed else (None, None)
        where = f" (first: {first_id}: {first.get('error')}; log {first.get('log')})" if first else ""
        raise StageError(f"run: {len(failed)} cell(s) failed{where}, {len(skipped)} cell(s) that need them were not run; "
                         "the finished cells are kept: fix the cause and rerun the same command to redo only what "
                         "is missing")
    return record


def _phases(timings: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per kind of cell: from the first one submitted to the last one finished, and the seconds summed."""
    out: Dict[str, Any] = {}
    for t in timings:
        ph = out.setdefault(t["kind"], {"first_submitted": t["submitted"], "last_finished": t["finished"],
                                        "cells": 0, "cell_seconds": 0.0})
        ph["first_submitted"] = min(ph["first_submitted"], t["submitted"])
        ph["last_finished"] = max(ph["last_finished"], t["finished"])
        ph["cells"] += 1
        ph["cell_seconds"] += t["seconds"] or 0.0
    for ph in out.values():
        ph["span_seconds"] = round(ph["last_finished"] - ph["first_submitted"], 2)
        ph["cell_seconds"] = round(ph["cell_seconds"], 2)
    return json.loads(json.dumps(out))
