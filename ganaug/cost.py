"""What a block of work cost: its wall seconds, the CPU seconds of this process and of its children, its peak resident
memory and, where it ran on a GPU, the GPU's seconds, peak memory and name.

`measure()` around a block fills a plain dict, also when the block raises:

    {"wall_seconds": 12.31, "cpu_seconds": 20.41, "cpu_self_seconds": 19.9, "cpu_children_seconds": 0.51,
     "peak_rss_mib": 812.4, "start_rss_mib": 410.2, "peak_rss_of": "block",
     "gpu_seconds": 0.0, "gpu": None, "peak_gpu_mib": None}

The peak resident memory is the block's own: on Linux the process's high-water mark is reset when the block starts
(`/proc/self/clear_refs`), so a small cell after a large one in the same long-lived process (the serial executor, a
local worker) does not inherit the large one's peak. Where that reset is not possible, the record holds the process's
lifetime peak (`ru_maxrss`) and says so: `"peak_rss_of": "process"`. Blocks in one process run one at a time (a
block's reset would cut another's peak short). Nothing here imports torch: CUDA is asked about only when torch is
already loaded, so measuring costs nothing on a CPU command such as `ganaug list`.
"""

from __future__ import annotations

import contextlib
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

MIB = 1024 * 1024
ADDITIVE = ("wall_seconds", "cpu_seconds", "cpu_self_seconds", "cpu_children_seconds", "gpu_seconds")
PEAKS = ("peak_rss_mib", "peak_gpu_mib")
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _status_kib(field: str) -> Optional[int]:
    """A `/proc/self/status` field in KiB (VmHWM, VmRSS); None off Linux."""
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    """Set the process's resident high-water mark (VmHWM) to what it holds now: Linux's clear_refs value 5."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _lifetime_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _cuda() -> Any:
    """torch.cuda where torch is loaded and CUDA is up in this process; else None (torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a broken CUDA setup is a CPU block here, not an error
        return None


def _gpu_names_from_driver() -> List[str]:
    """The GPUs' names from the NVIDIA driver's files, without creating a CUDA context."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model" and value.strip():
                    names.append(value.strip())
    return names


@contextlib.contextmanager
def measure(into: Optional[Dict[str, Any]] = None, on_gpu: bool = False) -> Iterator[Dict[str, Any]]:
    """Measure the block; yields the dict (`into`, or a new one) that holds its cost once the block ends.

    Args:
        on_gpu: the block's work runs on a GPU in a child process (NVlabs' train.py), where this process's CUDA
            counters cannot see it: its GPU seconds are its wall seconds and its device the driver's first GPU.
    """
    out: Dict[str, Any] = {} if into is None else into
    reset = _reset_peak_rss()
    start_rss = _status_kib("VmRSS")
    cuda = _cuda()
    held: Dict[int, int] = {}  # GPU memory allocated when the block starts, per device
    if cuda is not None:  # CUDA was up before the block: its peaks start again here
        with contextlib.suppress(Exception):
            for i in range(cuda.device_count()):
                cuda.reset_peak_memory_stats(i)
                held[i] = int(cuda.memory_allocated(i))
    wall0, self0, children0 = time.time(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    try:
        yield out
    finally:
        wall = time.time() - wall0
        cpu_self = _cpu(resource.RUSAGE_SELF) - self0
        cpu_children = _cpu(resource.RUSAGE_CHILDREN) - children0  # children the block started and waited for
        hwm = _status_kib("VmHWM") if reset else None
        now = _status_kib("VmRSS")
        out.update({
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(cpu_self + cpu_children, 3),
            "cpu_self_seconds": round(cpu_self, 3),
            "cpu_children_seconds": round(cpu_children, 3),
            # (the kernel updates the high-water marks lazily: never below what the process holds now)
            "peak_rss_mib": round(max(hwm if hwm is not None else _lifetime_peak_mib() * 1024, now or 0) / 1024, 1),
            "start_rss_mib": round(start_rss / 1024, 1) if start_rss is not None else None,
            "peak_rss_of": "block" if hwm is not None else "process",
        })
        out.update(_gpu_part(wall, on_gpu, held))


def _gpu_part(wall: float, on_gpu: bool, held: Dict[int, int]) -> Dict[str, Any]:
    """GPU seconds, device name and peak GPU memory of a block that just ended.

    A block ran on a GPU when it allocated GPU memory in this process beyond what was held when it started (the
    peaks were reset then) or when the caller says its child did. Its GPU seconds are then its wall seconds: the
    time it held the device (occupancy), not the time kernels ran on it, which would take a profiler to measure.
    """
    used: Dict[int, int] = {}
    names: List[str] = []
    cuda = _cuda()
    if cuda is not None:
        with contextlib.suppress(Exception):
            for i in range(cuda.device_count()):
                peak = int(cuda.max_memory_allocated(i))
                if peak > held.get(i, 0):
                    used[i] = peak
            names = [cuda.get_device_name(i) for i in used]
    if not used and on_gpu:
        names = _gpu_names_from_driver()[:1]
    ran = bool(used) or on_gpu
    return {"gpu_seconds": round(wall, 3) if ran else 0.0,
            "gpu": (", ".join(dict.fromkeys(names)) or None) if ran else None,
            "peak_gpu_mib": round(max(used.values()) / MIB, 1) if used else None}


_books: List[Dict[str, float]] = []  # the open `phases()` records of this process, innermost last


@contextlib.contextmanager
def phases() -> Iterator[Dict[str, float]]:
    """Collect the wall seconds of the `phase(name)` blocks run inside this block, by name (a cell's breakdown:
    load, build, steps, validation, test, write); yields the dict, filled as the phases end."""
    book: Dict[str, float] = {}
    _books.append(book)
    try:
        yield book
    finally:
        _books.remove(book)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Add this block's wall seconds to `name` in every open `phases()` record (nothing when none is open)."""
    if not _books:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        for book in _books:
            book[name] = book.get(name, 0.0) + dt


def rounded(book: Dict[str, float], wall: Optional[float] = None) -> Dict[str, float]:
    """A phases record for a file: seconds to 3 decimals; `wall` given, the rest of it as 'other'."""
    out = {k: round(v, 3) for k, v in book.items()}
    if wall is not None:
        out["other"] = round(max(0.0, wall - sum(book.values())), 3)
    return out


def total(costs: Iterable[Optional[Dict[str, Any]]]) -> Dict[str, Any]:
    """Costs added up: the seconds summed, the peaks the largest; `cells` counted, `unmeasured` those without one."""
    out: Dict[str, Any] = {k: 0.0 for k in ADDITIVE}
    out.update({k: None for k in PEAKS})
    out["cells"] = out["unmeasured"] = 0
    for c in costs:
        out["cells"] += 1
        if not c:
            out["unmeasured"] += 1
            continue
        for k in ADDITIVE:
            out[k] += c.get(k) or 0.0
        for k in PEAKS:
            if c.get(k) is not None:
                out[k] = max(out[k] or 0.0, c[k])
    for k in ADDITIVE:
        out[k] = round(out[k], 3)
    return out
