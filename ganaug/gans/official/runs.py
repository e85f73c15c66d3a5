"""The runs of train.py ganaug started in an official outdir, their snapshots, and the newest one to go on from."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from .env import PathLike
from .stats import _mean, _stats_rows

RUNS_FILE = "ganaug-runs.json"  # in the official outdir: where each run of train.py started (kimg, p)


_RUN_DIR = re.compile(r"^(\d+)")
_SNAPSHOT = re.compile(r"^network-snapshot-(\d+)\.pkl$")


@dataclass
class ResumePoint:
    """A complete snapshot to go on from."""

    pkl: Path
    run_id: int
    kimg: int  # whole thousands of images before this snapshot, over every earlier run (the snapshot's name)
    kimg_exact: float  # the same from its stats line
    augment_p: Optional[float]  # the augmentation probability at the snapshot


def _run_dirs(outdir: Path) -> Dict[int, Path]:
    out = {}
    if outdir.is_dir():
        for d in outdir.iterdir():
            m = _RUN_DIR.match(d.name)
            if m and d.is_dir():
                out[int(m.group(1))] = d
    return out


def _read_runs(outdir: Path) -> Dict[int, Dict[str, Any]]:
    try:
        data = json.loads((outdir / RUNS_FILE).read_text())
        return {int(k): v for k, v in data.get("runs", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def find_resume(outdir: PathLike) -> Optional[ResumePoint]:
    """The newest complete snapshot of the runs ganaug started in `outdir` (None if there is none).

    A snapshot counts as complete when its run's stats.jsonl has the line of the same tick: the official loop
    writes that line after the pickle, so a snapshot cut off mid-write is never picked. That line also gives
    the augmentation probability to carry over. Runs of train.py that ganaug did not start (no entry in
    ganaug-runs.json, so no known kimg offset) are ignored.
    """
    outdir = Path(outdir)
    runs = _read_runs(outdir)
    best: Optional[ResumePoint] = None
    for run_id, run_dir in sorted(_run_dirs(outdir).items()):
        info = runs.get(run_id)
        if info is None:
            continue
        offset = int(info.get("kimg_offset", 0))
        rows = _stats_rows(run_dir / "stats.jsonl")
        for pkl in run_dir.iterdir():
            m = _SNAPSHOT.match(pkl.name)
            if not m:
                continue
            k = int(m.group(1))
            same_tick = [r for r in rows if (kimg := _mean(r, "Progress/kimg")) is not None
                         and math.floor(kimg + 1e-9) == k]
            if not same_tick:
                continue
            row = same_tick[-1]
            point = ResumePoint(pkl=pkl, run_id=run_id, kimg=offset + k,
                                kimg_exact=offset + float(_mean(row, "Progress/kimg") or k),
                                augment_p=_mean(row, "Progress/augment"))
            if best is None or (point.kimg, point.run_id) >= (best.kimg, best.run_id):
                best = point
    return best
