"""Walk an experiment's graph with an executor: submit each cell once its inputs are done, report failures with
their log files while the others go on, skip what depends on a failure, cancel what is pending on Ctrl-C."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List

from ..errors import StageError
from ..utils import atomic_write_json


def _echo(msg: str) -> None:
    from ..stages.common import echo

    echo(msg)


def run_graph(cfg: Any, cells: List[Any], executor: Any, force: bool = False) -> Dict[str, Any]:
    """Run every cell that is not done; returns the timings written to <out_dir>/logs/run.json.

    A finished cell made by another config stops everything before any work (it needs --force), as each stage does.
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
    queue: List[Any] = []  # ready, not yet submitted, in the graph's order (the critical path first)
    used = 0  # CPUs held by the running cells, where the executor has a capacity
    timings: List[Dict[str, Any]] = []
    started = time.time()
    described = executor.describe()
    _echo(f"run: {len(cells)} cells, {len(done)} done, {total} to run; executor {described}")
    try:
        while todo or queue or running:
            for c in list(todo):
                bad = [d for d in c.deps if d in failed or d in skipped]
                if bad:
                    skipped[c.id] = bad[0]
                    todo.remove(c)
                elif all(d in done for d in c.deps):
                    queue.append(c)
                    todo.remove(c)
            ready = []
            while queue:  # as many as fit in the capacity; one always runs (a cell as wide as the machine runs alone)
                cost = executor.cost(queue[0])
                if (running or ready) and used + cost > (executor.capacity or 0):
                    break
                ready.append(queue.pop(0))
                used += cost
            if ready:
                submitted = time.time()
                for c, h in zip(ready, executor.submit(ready, force)):
                    running[h] = (c, submitted)
            if not running:
                break
            for h, outcome in executor.wait(list(running)):
                c, submitted = running.pop(h)
                used -= executor.cost(c)
                n = len(done) - (len(cells) - total) + len(failed) + 1
                timings.append({"id": c.id, "kind": c.kind, "ok": bool(outcome.get("ok")),
                                "submitted": outcome.get("started") or submitted,
                                "finished": time.time(), "seconds": outcome.get("seconds"),
                                "threads": outcome.get("threads")})
                if outcome.get("ok"):
                    done.add(c.id)
                    _echo(f"run: [{n}/{total}] done {c.label} in {outcome.get('seconds', 0):.0f}s")
                else:
                    failed[c.id] = outcome
                    _echo(f"run: [{n}/{total}] FAILED {c.label}: {outcome.get('error')}"
                          + (f" (log: {outcome['log']})" if outcome.get("log") else ""))
    except KeyboardInterrupt:
        _echo(f"run: interrupted; cancelling {len(todo) + len(queue)} pending cell(s), stopping {len(running)} running")
        executor.cancel(list(running))
        raise
    finally:
        executor.close()
        record = {"executor": described, "threads": executor.threads_line(), "wall_seconds": round(time.time() - started, 2),
                  "cells": timings, "phases": _phases(timings)}
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
