"""Following an official run's stats.jsonl into ganaug's metrics rows (metrics.jsonl, TensorBoard, the bar)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from tqdm import tqdm

from .env import PathLike

_SCALARS = {  # ganaug metrics key <- official training_stats name (its per-tick mean)
    "loss/G": "Loss/G/loss",
    "loss/D": "Loss/D/loss",
    "loss/G_pl": "Loss/G/reg",
    "loss/D_r1": "Loss/D/reg",
    "r_t": "Loss/signs/real",
    "augment/p": "Progress/augment",
    "seconds": "Timing/total_sec",
    "sec_per_kimg": "Timing/sec_per_kimg",
}


def _mean(stats: Dict[str, Any], name: str) -> Optional[float]:
    v = stats.get(name)
    if isinstance(v, dict):
        if not v.get("num"):
            return None
        v = v.get("mean")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def metrics_row(stats: Dict[str, Any], kimg_offset: float = 0.0) -> Optional[Dict[str, Any]]:
    """One official stats.jsonl line -> a ganaug metrics row (None for a line without Progress/kimg).

    kimg counts from the start of training (the official count restarts on --resume; `kimg_offset` adds what
    came before). D(x) and D(G(z)) are the sigmoid of the tick's mean logit, not the mean of the sigmoids,
    which the official stats do not keep.
    """
    kimg = _mean(stats, "Progress/kimg")
    if kimg is None:
        return None
    row: Dict[str, Any] = {"tick": int(_mean(stats, "Progress/tick") or 0), "kimg": round(kimg_offset + kimg, 3)}
    for key, name in _SCALARS.items():
        v = _mean(stats, name)
        if v is not None:
            row[key] = v
    for key, name in (("D(x)", "Loss/scores/real"), ("D(G(z))", "Loss/scores/fake")):
        v = _mean(stats, name)
        if v is not None:
            row[key] = 1.0 / (1.0 + math.exp(-max(min(v, 50.0), -50.0)))
    return row


class StatsFollower:
    """Reads an official run's stats.jsonl as it grows and appends ganaug rows to `metrics_path`, and the same rows
    to TensorBoard event files beside it, on the images shown so far (kimg x 1000) as the step.

    Only complete lines are read; a partial last line waits for its newline. `bar`, a tqdm in kimg, follows.
    `keep_kimg`: the kimg up to which an earlier run's rows were kept (a resume); its later points are dropped
    (None: all of them). `close()` closes the event file.
    """

    def __init__(self, metrics_path: PathLike, *, kimg_offset: float = 0.0, bar: Optional[tqdm] = None,
                 keep_kimg: Optional[float] = None):
        from ...tracking import Board

        self.metrics_path = Path(metrics_path)
        self.kimg_offset = kimg_offset
        self.bar = bar
        self.stats_path: Optional[Path] = None
        self.rows: List[Dict[str, Any]] = []
        self._pos = 0
        self._rest = b""
        self.board = Board(self.metrics_path.parent)
        self.board.drop_after(None if keep_kimg is None else int(round(keep_kimg * 1000)))

    def close(self) -> None:
        self.board.close()

    def follow(self, stats_path: PathLike) -> None:
        self.stats_path = Path(stats_path)
        self._pos, self._rest = 0, b""

    def poll(self) -> List[Dict[str, Any]]:
        """The rows of the lines completed since the last call (also appended to metrics_path)."""
        if self.stats_path is None or not self.stats_path.is_file():
            return []
        with open(self.stats_path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        self._pos += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        new = []
        for line in lines:
            try:
                stats = json.loads(line)
            except ValueError:
                continue  # a blank or foreign line
            row = metrics_row(stats, self.kimg_offset) if isinstance(stats, dict) else None
            if row is not None:
                new.append(row)
        if new:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in new))
            self.rows += new
            for r in new:
                self.board.scalars(r, int(round(r["kimg"] * 1000)))
            if self.bar is not None:
                kimg = new[-1]["kimg"]
                if self.bar.total is not None:
                    kimg = min(kimg, self.bar.total)
                self.bar.update(kimg - self.bar.n)
                self.bar.set_postfix_str(_postfix(new[-1]), refresh=False)
        return new


def _postfix(row: Dict[str, Any]) -> str:
    parts = [f"{k} {row[k]:.3f}" for k in ("loss/G", "loss/D", "augment/p") if k in row]
    return ", ".join(parts)


def _stats_rows(path: Path) -> List[Dict[str, Any]]:
    """The complete lines of a stats.jsonl, parsed."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows
