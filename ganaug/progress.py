"""A running cell's progress, for people, on every executor.

`bar(...)` is what a training loop reports through; it returns a tqdm-like object. Where the loop's output reaches a
terminal (`serial`, a stage run by hand) it is tqdm's bar, as always. In a worker (`local`, Ray, Slurm), whose output
goes to a log file, `worker_run` points it at `<out_dir>/logs/progress/<cell>.json` (`reporting_to`), and the bar
writes that file instead, atomically and at most once a second: step, total, unit, started, updated. The coordinator
reads those files while it waits and draws one display (`Display`): a bar per running cell with its rate and time
left, and the run's cells with the run's time left. Every worker sees the run folder, so the feed is the same on
every executor.

Progress lines for people (`echo`) go to stderr; `quiet()` says whether `--quiet` turned them (and the bars) off.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, TextIO

from tqdm import tqdm

PROGRESS_DIR = "progress"  # under <out_dir>/logs/


def quiet() -> bool:
    """`--quiet` (or GANAUG_QUIET=1, which workers inherit): progress lines and bars are off; warnings, errors and
    the table stay."""
    return os.environ.get("GANAUG_QUIET", "") not in ("", "0")


def echo(msg: str) -> None:
    """Progress lines for people go to stderr; tables go to stdout. A warning prints even under --quiet."""
    if quiet() and not msg.lstrip().lower().startswith("warning"):
        return
    print(msg, file=sys.stderr, flush=True)


def seconds_between_writes() -> float:
    """How often a worker rewrites its progress file, and how often the coordinator reads them [1 s]."""
    try:
        return max(0.0, float(os.environ.get("GANAUG_PROGRESS_SECONDS", "1")))
    except ValueError:
        return 1.0


def file_stem(cell_id: str) -> str:
    """A cell id as one file name: clf/real/seed-0 -> clf__real__seed-0."""
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", cell_id.replace("/", "__"))


def progress_path(out_dir: str | Path, cell_id: str) -> Path:
    return Path(out_dir) / "logs" / PROGRESS_DIR / (file_stem(cell_id) + ".json")


# ----------------------------------------------------------------------------------------------------
# The loops' side.


class Sink:
    """Where a `Tracked` bar reports; `final` at close."""

    def report(self, bar: "Tracked", final: bool = False) -> None:
        raise NotImplementedError


class FileSink(Sink):
    """Rewrites one JSON file (temporary file, then rename: a reader never sees half of it), at most every
    `interval` seconds, and always at the first report and at close."""

    def __init__(self, path: Path, interval: Optional[float] = None, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.interval = seconds_between_writes() if interval is None else interval
        self.clock = clock
        self.last: Optional[float] = None
        self.where = {"host": socket.gethostname(), "pid": os.getpid()}

    def report(self, bar: "Tracked", final: bool = False) -> None:
        now = self.clock()
        if not final and self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        record = {"desc": bar.desc, "step": bar.n, "total": bar.total, "unit": bar.unit, "initial": bar.initial,
                  "started": bar.started, "updated": now, "postfix": bar.postfix, "closed": final, **self.where}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
        except OSError:  # progress is for people: a full or read-only disk must not fail the cell
            pass


class Tracked:
    """The part of tqdm's interface the loops use (iterate, update, set_postfix, close, n, total), reported to a sink."""

    disable = False

    def __init__(self, sink: Sink, iterable: Optional[Iterable[Any]] = None, *, total: Optional[float] = None,
                 initial: float = 0, desc: str = "", unit: str = "it", **_: Any):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = initial + len(iterable)  # type: ignore[arg-type]
        self.sink, self.iterable = sink, iterable
        self.total, self.initial, self.n = total, initial, initial
        self.desc, self.unit, self.postfix = desc, unit, ""
        self.started = getattr(sink, "clock", time.time)()  # the sink's clock: `updated` is read from it too
        self.closed = False
        sink.report(self)

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "a bar made without an iterable cannot be iterated"
        for item in self.iterable:
            yield item
            self.update(1)  # as tqdm: a step counts once its body has run

    def update(self, n: float = 1) -> None:
        self.n += n
        self.sink.report(self)

    def set_postfix(self, ordered_dict: Optional[Dict[str, Any]] = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sink.report(self, final=True)

    def __enter__(self) -> "Tracked":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_sink: Optional[Sink] = None  # set while a worker runs a cell (or a benchmark times a loop)


@contextlib.contextmanager
def reporting_to(sink: Optional[Sink | Path | str]) -> Iterator[Optional[Sink]]:
    """Within the block, every `bar(...)` reports to `sink` (a progress file's path, or a Sink); None: tqdm as usual."""
    global _sink
    if isinstance(sink, (str, Path)):
        sink = FileSink(Path(sink))
    saved, _sink = _sink, sink
    try:
        yield sink
    finally:
        _sink = saved


def bar(iterable: Optional[Iterable[Any]] = None, *, total: Optional[float] = None, initial: float = 0, desc: str = "",
        unit: str = "it", disable: bool = False, **tqdm_kwargs: Any) -> Any:
    """A training loop's progress bar: tqdm's (shown unless `disable`), or, in a worker, one that feeds the
    coordinator's display through the cell's progress file (whatever `disable` says: the worker's own output goes
    to its log)."""
    if _sink is not None:
        return Tracked(_sink, iterable, total=total, initial=initial, desc=desc, unit=unit)
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=disable, **tqdm_kwargs)


def read(path: Path) -> Optional[Dict[str, Any]]:
    """A progress file's record, or None (not written yet, or unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def rate(record: Optional[Dict[str, Any]]) -> Optional[float]:
    """Steps a second since the bar was made (its own clock: no skew between hosts), or None before the first step."""
    if not record:
        return None
    try:
        done = float(record["step"]) - float(record.get("initial") or 0)
        seconds = float(record["updated"]) - float(record["started"])
    except (KeyError, TypeError, ValueError):
        return None
    return done / seconds if done > 0 and seconds > 0 else None


def seconds_left(record: Optional[Dict[str, Any]]) -> Optional[float]:
    """The loop's time left at its rate so far, from its last report."""
    r = rate(record)
    if r is None or not record or record.get("total") is None:
        return None
    return max(0.0, (float(record["total"]) - float(record["step"])) / r)


def fmt_seconds(seconds: Optional[float]) -> str:
    """63 -> '1m 03s'; 7300 -> '2h 02m'; None -> '?'."""
    if seconds is None:
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


# ----------------------------------------------------------------------------------------------------
# The coordinator's side.


class _CellBar(tqdm):
    """A slot of the display: a running cell's bar, drawn from its progress record (the worker's clock and rate)."""

    record: Optional[Dict[str, Any]] = None
    label = ""
    since: float = 0.0  # when the coordinator handed the cell over
    expected: Optional[float] = None  # seconds the estimate gives the cell, while it reports no steps

    @property
    def format_dict(self) -> Dict[str, Any]:  # type: ignore[override]
        d = super().format_dict
        rec = self.record
        if rec is not None:
            d["elapsed"] = max(0.0, time.time() - float(rec.get("started") or self.since))
            d["rate"] = rate(rec)
        else:
            d["elapsed"] = max(0.0, time.time() - self.since) if self.since else 0.0
        return d


STEPS_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
NO_STEPS_FORMAT = "{desc}: running [{elapsed}{postfix}]"
RUN_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cells [{elapsed}{postfix}]"


class Display:
    """One bar for the run (cells finished, time left) and one per running cell, redrawn from the cells' progress
    records; log lines go above them (`write`). `stream`: where to draw (stderr; a test hands a StringIO)."""

    def __init__(self, total: int, stream: Optional[TextIO] = None):
        self.stream = stream if stream is not None else sys.stderr
        self.run = tqdm(total=total, desc="run", file=self.stream, position=0, leave=True, bar_format=RUN_FORMAT,
                        dynamic_ncols=True, mininterval=0)
        self.slots: Dict[str, _CellBar] = {}
        self.free: List[_CellBar] = []
        self.eta = ""

    def begin(self, total: int) -> None:
        """The cells this run will run (those done before it are not counted)."""
        self.run.reset(total=total)

    def start(self, cell_id: str, label: str, expected: Optional[float] = None) -> None:
        b = self.free.pop(0) if self.free else _CellBar(total=None, desc=label, file=self.stream, leave=False,
                                                        position=1 + len(self.slots), bar_format=NO_STEPS_FORMAT,
                                                        dynamic_ncols=True, mininterval=0)
        b.record, b.since, b.expected, b.label = None, time.time(), expected, label
        b.set_description_str(label, refresh=False)
        b.bar_format = NO_STEPS_FORMAT
        b.set_postfix_str(f"about {fmt_seconds(expected)}" if expected else "", refresh=False)
        self.slots[cell_id] = b
        b.refresh()

    def update(self, cell_id: str, record: Optional[Dict[str, Any]]) -> None:
        b = self.slots.get(cell_id)
        if b is None:
            return
        if record is not None and record.get("total"):
            b.record = record
            b.bar_format = STEPS_FORMAT
            b.total, b.n, b.initial = record["total"], record["step"], record.get("initial") or 0
            b.unit = record.get("unit") or "it"
            # The cell's label, and what the loop's own description adds to it (a per-class GAN's class).
            extra = (record.get("desc") or "").partition(" ")[2].strip(": ")
            b.set_description_str(b.label + (f" [{extra}]" if extra and extra not in b.label else ""), refresh=False)
            b.set_postfix_str(record.get("postfix") or "", refresh=False)
        b.refresh()

    def finish(self, cell_id: str) -> None:
        b = self.slots.pop(cell_id, None)
        if b is not None:
            b.record, b.total, b.n = None, None, 0
            b.bar_format = "{desc}"
            b.set_description_str("", refresh=False)
            b.refresh()
            self.free.append(b)
        self.run.update(1)

    def set_eta(self, text: str) -> None:
        self.eta = text
        self.run.set_postfix_str(text, refresh=False)
        self.run.refresh()

    def write(self, msg: str) -> None:
        tqdm.write(msg, file=self.stream)

    def close(self) -> None:
        for b in list(self.slots.values()) + self.free:
            b.close()
        self.slots, self.free = {}, []
        self.run.close()
