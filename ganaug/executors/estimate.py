"""How long an experiment will take, before and while it runs.

Each cell's seconds come from the run folder's records where it has them (`logs/run.json`, the cells' `stage.json`:
the same cell, else cells of its arm or kind, scaled by their steps), else from a short benchmark on this device (a
few timed steps of the config's classifier, domain extractor and generator, through their own training loops, at
their batch sizes on random tensors of the data's shape, scaled to the configured steps; cached in
`<out_dir>/logs/benchmark.json`: benchmark.py). The run's time is then the cells scheduled as the executor runs them:
as many at once as their threads fit in its capacity (and its workers), each after its inputs (makespan.py). While
the run goes, `Eta` puts the durations measured so far first and reads the running cells' progress files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from .. import progress
from ..progress import fmt_seconds
from .benchmark import Benchmark, benchmark_seconds
from .makespan import Shape, makespan
from .workload import Guess, Sizes, data_sizes, planned_steps

# ----------------------------------------------------------------------------------------------------
# Records of earlier runs in the run folder.


def _group(cell_id: str) -> str:
    """Cells that take alike: an arm's seeds, a generator's seeds."""
    return re.sub(r"(^|/)seed-\d+$", "", cell_id)


@dataclass
class Obs:
    id: str
    kind: str
    seconds: float
    steps: Optional[float]


def _record_steps(kind: str, rec: Dict[str, Any]) -> Optional[float]:
    try:
        if kind == "train-clf":
            return float(rec["config"]["classifier"]["steps"])
        if kind == "features":
            return float(rec["config"]["domain"]["steps"])
        if kind == "train-gan" and rec.get("steps"):
            return float(rec["steps"])
    except (KeyError, TypeError, ValueError):
        pass
    return None


def read_records(out_dir: str | Path, cells: List[Any]) -> List[Obs]:
    """Every cell's seconds the run folder remembers: the last `run`'s (logs/run.json, a worker's whole time), and
    each cell folder's stage record (the stage's own time) for cells that run did not make."""
    out: Dict[str, Obs] = {}
    kinds = {c.id: c.kind for c in cells}
    try:
        last = json.loads((Path(out_dir) / "logs" / "run.json").read_text())
    except (OSError, ValueError):
        last = {}
    for t in last.get("cells", []) if isinstance(last, dict) else []:
        if t.get("ok") and t.get("seconds") is not None and t.get("id"):
            out[t["id"]] = Obs(t["id"], t.get("kind") or kinds.get(t["id"], "?"), float(t["seconds"]), t.get("steps"))
    from ..stages.records import read_record

    for c in cells:
        if c.id in out:
            continue
        rec = read_record(c.folder)
        if rec and rec.get("seconds") is not None and not rec.get("resumed_from_step"):
            out[c.id] = Obs(c.id, c.kind, float(rec["seconds"]), _record_steps(c.kind, rec))
    return list(out.values())


def _scaled(obs: List[Obs], steps: Optional[float]) -> Optional[float]:
    """The median of the observations, each scaled to `steps` where both step counts are known."""
    vals = sorted(o.seconds * (steps / o.steps if steps and o.steps else 1.0) for o in obs)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def from_observations(cell: Any, obs: List[Obs], steps: Optional[float]) -> Optional[float]:
    """The cell's own observation, else its group's (an arm's other seeds), else its kind's."""
    for same in (lambda o: o.id == cell.id, lambda o: _group(o.id) == _group(cell.id), lambda o: o.kind == cell.kind):
        picked = [o for o in obs if same(o)]
        if picked:
            return _scaled(picked, steps)
    return None


# ----------------------------------------------------------------------------------------------------
# Putting it together.


@dataclass
class Plan:
    cells: Dict[str, Guess]  # every cell's (done: what it took)
    total: Optional[float]  # the run's wall seconds, scheduled as the executor would
    shape: Shape
    unknown: int  # cells to run without an estimate (counted as 0 s in the total)
    sizes_exact: bool
    bench_seconds: float
    bench_ran: int
    bench_file: Optional[Path]
    bench_load: Optional[float] = None  # the load average of a benchmark measured on a busy machine

    def sources(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for g in self.cells.values():
            if g.source != "done":
                out[g.source] = out.get(g.source, 0) + 1
        return out

    def line(self) -> str:
        """One line: the run's time, how the executor runs the cells, and where the numbers came from."""
        todo = sum(self.sources().values())
        if not todo:
            return "nothing to run"
        by = ", ".join(f"{n} from {s}" for s, n in self.sources().items())
        bench = ""
        if self.bench_ran:
            bench = f"; benchmark {self.bench_seconds:.1f}s here, kept in {self.bench_file}"
        elif self.sources().get("benchmark"):
            bench = f"; benchmark from {self.bench_file}"
        if bench and self.bench_load is not None:
            from .base import available_cores

            bench += f" (measured while other work held the cores: load {self.bench_load:g} on {available_cores()})"
        unknown = f" (+ {self.unknown} cell(s) without an estimate)" if self.unknown else ""
        guessed = "" if self.sizes_exact else "; data sizes guessed until the split exists"
        return (f"about {fmt_seconds(self.total)}{unknown} for {todo} cell(s) ({self.shape.describe()}); "
                f"per cell: {by}{bench}{guessed}")


def estimate(cfg: Any, cells: List[Any], states: Dict[str, str], shape: Optional[Shape] = None,
             benchmark: bool = True) -> Plan:
    """Each cell's seconds (records of this run folder first, else the benchmark) and the run's, for `states`
    (a cell's state: done, to run, resume (step N), differs)."""
    shape = shape or Shape.of_config(cfg)
    obs = read_records(cfg.out_dir, cells)
    sizes_of: Dict[str, Sizes] = {}
    bench = Benchmark(cfg, shape) if benchmark else None
    keys: Dict[str, Dict[str, Any]] = {}
    out: Dict[str, Guess] = {}
    todo = []

    def sizes(cell: Any) -> Sizes:
        from ..stages.layout import paths

        where = str(paths(cell.sub).split)
        if where not in sizes_of:
            sizes_of[where] = data_sizes(cell.sub)
        return sizes_of[where]

    by_id = {o.id: o for o in obs}
    for c in cells:
        state = states.get(c.id, "to run")
        if state == "done":
            o = by_id.get(c.id)
            out[c.id] = Guess(o.seconds if o else None, "done")
            continue
        todo.append(c)
        seconds = from_observations(c, obs, planned_steps(c, sizes(c)) if c.sub is not None else None)
        if seconds is not None:
            out[c.id] = Guess(seconds, "records")
        elif bench is not None and c.sub is not None:
            sz = sizes(c)
            k: Dict[str, Any] = {}
            if c.kind == "train-clf":
                from ..config import arm_from_dict

                k["clf"] = bench.classifier(c.sub, arm_from_dict(c.spec["arm"]), sz)
            if c.kind in ("features", "evaluate"):
                k["domain"] = bench.domain(c.sub, sz)
            if c.kind in ("train-gan", "sample"):
                k["gan"] = bench.gan(c.sub, c.spec.get("generator"), sz)
            if c.kind == "evaluate":
                k["mac"] = bench.mac()
            keys[c.id] = k
        else:
            out[c.id] = Guess(None, "unknown")
    if bench is not None:
        bench.run()
        for c in todo:
            if c.id in keys:
                out[c.id] = benchmark_seconds(c, sizes(c), bench, keys[c.id])
    for c in todo:  # an interrupted training cell continues from its checkpoint: only what is left
        m = re.match(r"resume \(step (\d+)\)", states.get(c.id, ""))
        steps = planned_steps(c, sizes(c)) if c.sub is not None else None
        if m and steps and out[c.id].seconds is not None:
            out[c.id] = Guess(out[c.id].seconds * max(0.0, 1 - int(m.group(1)) / steps), out[c.id].source)
    done = [c.id for c in cells if states.get(c.id) == "done"]
    seconds = {i: g.seconds or 0.0 for i, g in out.items()}
    total = makespan(cells, seconds, shape, done=done)
    unknown = sum(1 for c in todo if out[c.id].seconds is None)
    exact = all(s.exact for s in sizes_of.values())
    return Plan(out, total, shape, unknown, exact, bench.seconds if bench else 0.0, bench.ran if bench else 0,
                bench.files[0] if bench else None, bench.busy() if bench else None)


# ----------------------------------------------------------------------------------------------------
# While the run goes.


class Eta:
    """The run's time left: finished cells' seconds in this run (per arm or kind, scaled by steps) first, else the
    estimate the run started with; running cells from their progress files (their rate so far), else their estimate
    less the time they have run."""

    def __init__(self, cells: List[Any], shape: Shape, prior: Optional[Plan] = None):
        self.cells = cells
        self.shape = shape
        self.prior = prior.cells if prior is not None else {}
        self.steps: Dict[str, Optional[float]] = {}
        self._plan_steps()
        self.seen: List[Obs] = []

    def _plan_steps(self) -> None:
        """Each cell's loop length (from the split's manifest once it exists: a GAN's steps follow its images)."""
        from ..stages.layout import paths

        sizes_of: Dict[str, Optional[Sizes]] = {}
        for c in self.cells:
            try:
                where = str(paths(c.sub).split) if c.sub is not None else ""
                if where not in sizes_of:
                    sizes_of[where] = data_sizes(c.sub) if c.sub is not None else None
                self.steps[c.id] = planned_steps(c, sizes_of[where])
            except Exception:  # noqa: BLE001 - only an estimate
                self.steps[c.id] = None

    def finished(self, cell: Any, seconds: Optional[float]) -> None:
        if cell.kind == "split":
            self._plan_steps()
        if seconds is not None:
            self.seen.append(Obs(cell.id, cell.kind, float(seconds), self.steps.get(cell.id)))

    def cell(self, cell: Any) -> Guess:
        s = from_observations(cell, self.seen, self.steps.get(cell.id))
        if s is not None:
            return Guess(s, "this run")
        return self.prior.get(cell.id) or Guess(None, "unknown")

    def left(self, done: Set[str], running: Dict[str, Tuple[float, Optional[Dict[str, Any]]]],
             gone: Iterable[str] = ()) -> Tuple[Optional[float], str]:
        """(seconds left, the source most of them came from); None while some cell to run has no estimate at all."""
        weight: Dict[str, float] = {}
        seconds: Dict[str, float] = {}
        unknown = False
        now: Dict[str, float] = {}
        for c in self.cells:
            if c.id in done:
                continue
            g = self.cell(c)
            if c.id in running:
                elapsed, record = running[c.id]
                left = progress.seconds_left(record)
                if left is None:
                    left = max(1.0, (g.seconds or 0.0) - elapsed) if g.seconds is not None else None
                    src = g.source
                else:
                    src = "progress"
                if left is None:
                    unknown = True
                    left = 0.0
                now[c.id] = left
                weight[src] = weight.get(src, 0.0) + left
                continue
            if g.seconds is None:
                unknown = True
            seconds[c.id] = g.seconds or 0.0
            weight[g.source] = weight.get(g.source, 0.0) + (g.seconds or 0.0)
        total = makespan(self.cells, seconds, self.shape, done=done, running=now, gone=gone)
        source = max(weight, key=lambda k: weight[k]) if weight else ""
        return (None if unknown and total == 0 else total), source

    def text(self, done: Set[str], running: Dict[str, Tuple[float, Optional[Dict[str, Any]]]],
             gone: Iterable[str] = ()) -> str:
        gone = set(gone)
        if all(c.id in done or c.id in gone for c in self.cells):
            return ""
        left, source = self.left(done, running, gone)
        if left is None:
            return ""
        return f"about {fmt_seconds(left)} left" + (f" ({source})" if source else "")
