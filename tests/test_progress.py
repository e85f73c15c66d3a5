"""Live progress on every executor and the time estimate: the loops' bars write a progress file in a worker (and are
tqdm's in the serial path), the coordinator's display reads them while it waits (local processes, Ray, Slurm through
submitit), the run's time left, and `--dry-run`'s estimate per cell and in all, from a benchmark or the records."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from tqdm import tqdm

from ganaug import progress
from ganaug.config import load_config
from ganaug.stages.cells import build_graph

from .conftest import ok, tiny_config, write_yaml


@pytest.fixture(autouse=True)
def _own_cache_and_loud(tmp_path: Path, monkeypatch: Any) -> None:
    """A benchmark cache of the test's own; progress on (--quiet in another test sets GANAUG_QUIET in os.environ)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GANAUG_QUIET", "0")


def cfg_file(tmp_path: Path, folder: Path, name: str, **sections: Any) -> Path:
    return write_yaml(tmp_path / f"{name}.yaml", tiny_config(tmp_path, folder, out_dir=str(tmp_path / name), **sections))


class Recording(progress.Display):
    """The real display, drawn into a StringIO, keeping every record it was handed and every time left it showed."""

    def __init__(self, total: int = 0):
        super().__init__(total, stream=io.StringIO())
        self.records: Dict[str, List[Dict[str, Any]]] = {}
        self.etas: List[str] = []
        self.started: List[str] = []

    def start(self, cell_id: str, label: str, expected: Optional[float] = None) -> None:
        self.started.append(cell_id)
        super().start(cell_id, label, expected)

    def update(self, cell_id: str, record: Optional[Dict[str, Any]]) -> None:
        if record is not None:
            self.records.setdefault(cell_id, []).append(record)
        super().update(cell_id, record)

    def set_eta(self, text: str) -> None:
        self.etas.append(text)
        super().set_eta(text)

    def text(self) -> str:
        return self.stream.getvalue()  # type: ignore[attr-defined]


def steps_seen(display: Recording, cell_id: str) -> List[float]:
    return [r["step"] for r in display.records.get(cell_id, [])]


def run_with_display(cfg_path: Path, monkeypatch: Any, executor: str, **extra: str) -> Recording:
    from ganaug.executors import get_executor, run_graph

    monkeypatch.setenv("GANAUG_PROGRESS_SECONDS", "0.02")  # workers write, and the coordinator reads, that often
    cfg = load_config(cfg_path, [f"executor.name={executor}"] + [f"{k}={v}" for k, v in extra.items()])
    display = Recording()
    run_graph(cfg, build_graph(cfg), get_executor(cfg, progress=True), display=display)
    return display


# ----------------------------------------------------------------------------------------------------
# The loops' side: one object, tqdm's bar or the progress file.


def test_a_bar_in_a_worker_writes_its_progress_file_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "progress" / "clf__real__seed-0.json"
    now = [1000.0]
    sink = progress.FileSink(path, interval=1.0, clock=lambda: now[0])
    written: List[int] = []
    with progress.reporting_to(sink):
        bar = progress.bar(range(10), total=10, desc="train-clf real seed 0", unit="step", disable=True)
        assert not isinstance(bar, tqdm)
        first = progress.read(path)
        assert first is not None and first["step"] == 0 and first["total"] == 10  # written when made, even disabled
        for _ in bar:
            now[0] += 0.3  # a step takes 0.3 s
            rec = progress.read(path)
            written.append(rec["step"] if rec else -1)
        bar.close()
    last = progress.read(path)
    assert last is not None and last["step"] == 10 and last["closed"] and last["unit"] == "step"
    assert last["desc"] == "train-clf real seed 0" and last["updated"] == pytest.approx(1003.0)
    assert written == sorted(written) and len(set(written)) == 3, written  # steps 0, 4 and 7: once a second (0.3 s steps)
    assert progress.rate(last) == pytest.approx(10 / 3.0)
    assert progress.seconds_left({**last, "step": 4}) == pytest.approx(6 / (4 / 3.0))
    assert not list(path.parent.glob(".*.tmp")), "written through a temporary file, renamed over"


def test_without_a_worker_the_bar_is_tqdms(tmp_path: Path) -> None:
    bar = progress.bar(total=5, desc="train-gan", disable=True)
    assert isinstance(bar, tqdm)
    bar.close()


# ----------------------------------------------------------------------------------------------------
# The coordinator's side, on every executor.


ARMS = [{"name": "real", "data": "real"}, {"name": "synthetic", "data": "synthetic"}]


def test_local_workers_feed_the_coordinators_display(tmp_path: Path, image_folder: Path, monkeypatch: Any) -> None:
    f = cfg_file(tmp_path, image_folder, "loc", arms=ARMS, classifier={"steps": 300, "eval_every": 100},
                 evaluate={"enabled": False})
    display = run_with_display(f, monkeypatch, "local", **{"executor.workers": "2"})
    run = tmp_path / "loc"

    # Each cell with a loop left its progress file: the last write is the end of its loop.
    for cell, total in (("clf__real__seed-0", 300), ("clf__synthetic__seed-0", 300)):
        rec = json.loads((run / "logs" / "progress" / f"{cell}.json").read_text())
        assert rec["step"] == rec["total"] == total and rec["closed"] and rec["pid"] != os.getpid()
    gan = json.loads((run / "logs" / "progress" / "gan.json").read_text())
    assert gan["step"] == gan["total"] > 0 and gan["unit"] == "step"

    # The display received them while the cells ran: increasing steps, up to the end.
    clf = [c for c in display.records if c.startswith("clf/")]
    assert len(clf) == 2
    for cell in clf:
        seen = steps_seen(display, cell)
        assert seen == sorted(seen) and seen[-1] == 300, (cell, seen)
    assert max(len(set(steps_seen(display, c))) for c in clf) >= 3, {c: steps_seen(display, c) for c in clf}
    assert "gan" in display.records and "split" in display.started
    text = display.text()
    assert "train-clf real seed 0" in text and "300/300 step" in text
    assert any("left" in e for e in display.etas), display.etas  # the run's time left, from the cells done so far
    assert "run: [5/5] done" in text  # the log lines go above the bars


@pytest.mark.cluster  # starts a local Ray / submitit's local cluster: make test-clusters
def test_ray_feeds_the_display_the_same_way(tmp_path: Path, image_folder: Path, monkeypatch: Any) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    f = cfg_file(tmp_path, image_folder, "ray", arms=ARMS[:1], seeds=[0], classifier={"steps": 300, "eval_every": 100})
    display = run_with_display(f, monkeypatch, "ray", **{"executor.workers": "2"})
    seen = steps_seen(display, "clf/real/seed-0")
    assert seen == sorted(seen) and seen[-1] == 300 and len(set(seen)) >= 2, seen
    rec = json.loads((tmp_path / "ray" / "logs" / "progress" / "clf__real__seed-0.json").read_text())
    assert rec["pid"] != os.getpid()  # written by the Ray worker


@pytest.mark.cluster  # starts a local Ray / submitit's local cluster: make test-clusters
def test_slurm_jobs_feed_the_display_through_the_run_folder(tmp_path: Path, image_folder: Path, monkeypatch: Any) -> None:
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    f = cfg_file(tmp_path, image_folder, "sl", arms=ARMS[:1], seeds=[0], classifier={"steps": 300, "eval_every": 100},
                 executor={"name": "slurm", "threads": 1, "slurm": {"cluster": "local", "time_min": 5}})
    display = run_with_display(f, monkeypatch, "slurm")
    seen = steps_seen(display, "clf/real/seed-0")
    assert seen == sorted(seen) and seen[-1] == 300, seen
    assert "300/300 step" in display.text()


def test_quiet_runs_show_no_progress_and_write_no_progress_files(tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "q", arms=ARMS[:1], seeds=[0])
    r = ok("run", "-c", str(f), "--executor", "local", "--set", "executor.workers=2", "--quiet", "--progress")
    assert r.stderr.strip() == "", r.stderr
    assert not (tmp_path / "q" / "logs" / "progress").exists()
    assert (tmp_path / "q" / "compare" / "table.md").is_file()


def test_a_failed_cell_is_said_even_when_quiet(tmp_path: Path, image_folder: Path, monkeypatch: Any,
                                               capsys: Any) -> None:
    from ganaug.errors import StageError
    from ganaug.executors import run_graph

    class FailsSplit:
        name, capacity = "fake", None

        def describe(self) -> str:
            return "fake"

        def threads_line(self) -> str:
            return ""

        def cost(self, cell: Any) -> int:
            return 0

        def submit(self, cells: List[Any], force: bool) -> List[str]:
            return [c.id for c in cells]

        def wait(self, handles: List[str]) -> List[Any]:
            return [(h, {"ok": False, "error": "boom", "log": "split.log", "seconds": 0.0}) for h in handles]

        def close(self) -> None:
            pass

    monkeypatch.setenv("GANAUG_QUIET", "1")
    cfg = load_config(cfg_file(tmp_path, image_folder, "fq", arms=ARMS[:1]))
    with pytest.raises(StageError):
        run_graph(cfg, build_graph(cfg), FailsSplit())
    err = capsys.readouterr().err
    assert "FAILED split: boom (log: split.log)" in err and "run: 2 cells" not in err


# ----------------------------------------------------------------------------------------------------
# The estimate: per cell and in all, before a run and while it goes.


def test_the_schedule_counts_the_executors_parallelism() -> None:
    from ganaug.executors.makespan import Shape, makespan

    class C:
        def __init__(self, id: str, kind: str, deps: tuple = ()):
            self.id, self.kind, self.deps = id, kind, deps

    cells = [C("split", "split"), C("gan", "train-gan", ("split",))] + [C(f"clf/{i}", "train-clf", ("split",))
                                                                        for i in range(4)]
    seconds = {"split": 1.0, "gan": 10.0, **{f"clf/{i}": 5.0 for i in range(4)}}
    two_cores = Shape("local", capacity=2, slots=2, gen_threads=2, clf_threads=1)
    assert makespan(cells, seconds, two_cores) == 1 + 10 + 5 + 5  # the GAN alone, then two classifiers at a time
    assert makespan(cells, seconds, Shape("serial", None, 1, 2, 1)) == 1 + 10 + 4 * 5
    assert makespan(cells, seconds, Shape("slurm", None, None, 2, 1)) == 1 + 10  # a cluster: every ready cell at once
    assert makespan(cells, seconds, two_cores, done=["split", "gan"], running={"clf/0": 2.0}) == 2 + 5 + 5 - 2 + 0
    assert makespan(cells, seconds, two_cores, gone=["split"]) == 0  # nothing can run without the split


class _C:
    def __init__(self, id: str, kind: str, deps: tuple = ()):
        self.id, self.kind, self.deps = id, kind, deps


def _gan_beside_classifiers() -> List[Any]:
    """A GAN of one thread beside four real-only classifier runs; one classifier run needs the GAN's samples."""
    return ([_C("split", "split"), _C("gan", "train-gan", ("split",)), _C("samples", "sample", ("gan",))]
            + [_C(f"clf/real/{i}", "train-clf", ("split",)) for i in range(4)]
            + [_C("clf/synthetic/0", "train-clf", ("samples",))])


def test_the_ready_cell_on_the_longest_path_starts_first() -> None:
    """When the GAN ends, its samples start before the real-only runs that queued while it trained: the fakes' run
    waits for one of them, not for all (a first-come queue took 27 s here)."""
    from ganaug.executors.makespan import Shape, makespan, ranks

    cells = _gan_beside_classifiers()
    seconds = {"split": 1.0, "gan": 10.0, "samples": 1.0, "clf/synthetic/0": 10.0,
               **{f"clf/real/{i}": 5.0 for i in range(4)}}
    one_thread_each = Shape("local", capacity=2, slots=2, gen_threads=1, clf_threads=1)
    r = ranks(cells, seconds)
    assert r["gan"] > r["clf/real/0"] and r["samples"] > r["clf/real/3"]
    # split 0-1; gan 1-11 beside real 0 and 1; at 11 samples 11-12 beside real 2 (11-16); synthetic 12-22; real 3 16-21
    assert makespan(cells, seconds, one_thread_each) == 22


def test_the_scheduler_starts_cells_in_the_order_the_estimate_simulates(tmp_path: Path) -> None:
    """run_graph, on an executor whose cells take the seconds above on a clock of its own, ends when makespan says."""
    from types import SimpleNamespace

    from ganaug.executors import run_graph
    from ganaug.executors.estimate import Guess, Plan
    from ganaug.executors.makespan import Shape, makespan

    seconds = {"split": 1.0, "gan": 10.0, "samples": 1.0, "clf/synthetic/0": 10.0,
               **{f"clf/real/{i}": 5.0 for i in range(4)}}

    class Cell(_C):
        label = property(lambda self: self.id)

        def state(self, force: bool) -> str:
            return "to run"

    class Clock:
        name, capacity, slots, feeds_progress = "clock", 2, 2, False
        cfg = SimpleNamespace(executor=SimpleNamespace(clf_threads=1))

        def __init__(self) -> None:
            self.now, self.ends, self.order = 0.0, {}, []

        def describe(self) -> str:
            return "clock"

        def threads_line(self) -> str:
            return "1 thread each"

        def gen_threads(self) -> int:
            return 1

        def cost(self, cell: Any) -> int:
            return 1

        def submit(self, cells: List[Any], force: bool) -> List[str]:
            for c in cells:
                self.ends[c.id] = self.now + seconds[c.id]
                self.order.append(c.id)
            return [c.id for c in cells]

        def wait(self, handles: List[str], timeout: Optional[float] = None) -> List[Any]:
            first = min(handles, key=lambda h: (self.ends[h], handles.index(h)))
            self.now = self.ends.pop(first)
            return [(first, {"ok": True, "seconds": seconds[first]})]

        def close(self) -> None:
            pass

    cells = [Cell(c.id, c.kind, c.deps) for c in _gan_beside_classifiers()]
    cfg = SimpleNamespace(out_dir=str(tmp_path))
    shape = Shape("clock", 2, 2, 1, 1)
    plan = Plan({i: Guess(s, "benchmark") for i, s in seconds.items()}, makespan(cells, seconds, shape), shape, 0,
                True, 0.0, 0, None)
    ex = Clock()
    run_graph(cfg, cells, ex, display=None, plan=plan)
    assert ex.now == makespan(cells, seconds, shape) == 22
    assert ex.order.index("samples") < ex.order.index("clf/real/3")
    ex = Clock()  # without an estimate (--quiet): the longest chain of cells still goes first
    run_graph(cfg, [Cell(c.id, c.kind, c.deps) for c in cells], ex, display=None)
    assert ex.order[:3] == ["split", "gan", "clf/real/0"] and ex.order.index("samples") < ex.order.index("clf/real/3")


def test_dry_run_estimates_each_cell_and_the_run_from_a_benchmark_then_from_the_records(
        tmp_path: Path, image_folder: Path) -> None:
    f = cfg_file(tmp_path, image_folder, "est", arms=ARMS, seeds=[0, 1],
                 executor={"name": "local", "workers": 2, "threads": 1})
    r = ok("run", "-c", str(f), "--dry-run")
    lines = r.output.split("plan for")[1].splitlines()
    clf = [line for line in lines if line.strip().startswith("train-clf")]
    assert len(clf) == 4 and all("(benchmark)" in line for line in clf), clf
    for kind in ("features", "train-gan", "sample", "evaluate"):
        assert any(line.strip().startswith(kind) and "(benchmark)" in line for line in lines), (kind, lines)
    total = [line for line in lines if line.strip().startswith("time")]
    assert len(total) == 1 and "about " in total[0] and "local: 2 classifier cell(s) at a time" in total[0], total
    assert "benchmark " in total[0] and "s here, kept in" in total[0] and "from benchmark" in total[0], total
    assert not (tmp_path / "est").exists(), "a dry run writes nothing into the run folder"
    r = ok("run", "-c", str(f), "--dry-run")  # again: the benchmark is not run twice
    assert "benchmark from" in r.output and "s here, kept in" not in r.output

    r = ok("run", "-c", str(f))
    assert "run: estimate about " in r.stderr
    record = json.loads((tmp_path / "est" / "logs" / "run.json").read_text())
    assert {c["id"]: c["steps"] for c in record["cells"]}["clf/real/seed-0"] == 6
    assert (tmp_path / "est" / "logs" / "benchmark.json").is_file()

    # After the run: what each cell took, and the new cells' estimates from the records of their arm or kind.
    r = ok("run", "-c", str(f), "--dry-run", "--set", "seeds=[0,1,2]")
    lines = r.output.split("plan for")[1].splitlines()
    assert all("took " in line for line in lines if " done " in line) and sum(" done " in line for line in lines) == 9
    new = [line for line in lines if line.strip().startswith("train-clf") and "to run" in line]
    assert len(new) == 2 and all("(records)" in line for line in new), new
    total = [line for line in lines if line.strip().startswith("time")][0]
    assert "2 from records" in total and "benchmark" not in total, total


def test_records_scale_with_the_steps_and_an_arm_takes_its_own_time(tmp_path: Path, image_folder: Path) -> None:
    from ganaug.executors.estimate import Obs, from_observations

    cfg = load_config(cfg_file(tmp_path, image_folder, "sc", seeds=[0, 1]))
    cells = {c.id: c for c in build_graph(cfg)}
    obs = [Obs("clf/real/seed-0", "train-clf", 10.0, 100), Obs("clf/real-aug/seed-0", "train-clf", 30.0, 100)]
    assert from_observations(cells["clf/real-aug/seed-0"], obs, 200) == 60.0  # its own record, twice the steps
    assert from_observations(cells["clf/real/seed-1"], obs, 100) == 10.0  # its arm's other seed
    assert from_observations(cells["clf/synthetic/seed-0"], obs, 100) == 20.0  # the kind's median
    assert from_observations(cells["gan"], obs, None) is None
