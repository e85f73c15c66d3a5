"""TensorBoard event files beside every metrics.jsonl, so `tensorboard --logdir runs/NAME` shows each cell as a run.

`Board` is what the stats stream (`utils.Stats`) and the official follower write through: a SummaryWriter opened at
the first point (imported then: `import ganaug` does not load TensorBoard), flushed at every write, closed with the
stream. Tags are the metrics.jsonl names (`tag_of`). The x axis is the loop's optimizer step (GAN pairs, the
likelihood loop, the classifier, the domain extractor), images shown for the official StyleGAN2-ADA.

File names. SummaryWriter names a file by the second, host and process that opened it; a closed file is renamed
`events.out.tfevents.NNNN.ganaug`, numbered in the order the folder's files were written, and a file a killed
process left is given the next number when the folder is opened again. So a finished folder's names depend on
nothing but its history (a run on two processes holds the same files as on one), and TensorBoard, which reads a
folder's files in name order, reads them in the order they were written. A resumed stream (`drop_after`) opens its
file with SummaryWriter's purge_step, which makes TensorBoard drop the points an interrupted process wrote past the
checkpoint; the stream then writes them again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

EVENTS_GLOB = "events.out.tfevents.*"
_NUMBERED = re.compile(r"^events\.out\.tfevents\.(\d{4,})\.ganaug$")

# Keys without a group of their own (a "group/name" key is its own tag: loss/G, augment/p, fid/val, acc/val, ...).
_TAGS = {
    "D(x)": "D/D(x)",  # mean sigmoid of D's logits on reals and on fakes
    "D(G(z))": "D/D(G(z))",
    "r_t": "augment/rt",  # the official loop's name for ADA's overfitting heuristic
    "seconds": "time/seconds",
    "img_per_s": "time/img_per_s",
    "sec_per_kimg": "time/sec_per_kimg",
    "epoch": "progress/epoch",
    "kimg": "progress/kimg",
    "tick": "progress/tick",
    "class": "progress/class",  # the pair a per-class GAN is training
    "step": None,  # the x axis
}


def tag_of(key: str) -> Optional[str]:
    """The TensorBoard tag of a metrics.jsonl key: itself when grouped, else from the table, else `train/<key>`."""
    if "/" in key:
        return key
    return _TAGS.get(key, f"train/{key}")


def grid_image(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """Float [-1, 1] images (N, C, H, W) -> one (3, H', W') grid in [0, 1], laid out as `save_grid` writes its PNG."""
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().cpu().add(1).div(2).clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)


class Board:
    """The event files of one folder (one TensorBoard run); nothing is written, or imported, before the first point."""

    def __init__(self, log_dir: Union[str, Path]):
        self.log_dir = Path(log_dir)
        self.step: Optional[int] = None  # the step of the last point written
        self._writer: Any = None
        self._file: Optional[Path] = None  # the open file's name as SummaryWriter gave it
        self._purge: Optional[int] = None

    def drop_after(self, step: Optional[int]) -> None:
        """Continue a stream whose points up to `step` (None: none) are on disk: later ones written before are dropped."""
        self.close()
        self._purge = 0 if step is None else int(step) + 1
        self.step = step

    def scalars(self, row: Dict[str, Any], step: int) -> None:
        """Every number of a metrics row, each under its tag, at `step`."""
        w = self._open()
        for key, value in row.items():
            tag = tag_of(key)
            if tag is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                w.add_scalar(tag, float(value), int(step))
        self.step = int(step)
        w.flush()

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        """A (C, H, W) image in [0, 1] at `step`."""
        w = self._open()
        w.add_image(tag, grid, int(step), dataformats="CHW")
        w.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the open file and give it its numbered name (it is complete now)."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        if self._file is not None and self._file.is_file():
            self._file.rename(self.log_dir / self._next_name())
        self._file = None

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for p in self.log_dir.glob(EVENTS_GLOB) if (m := _NUMBERED.match(p.name))]
        return f"events.out.tfevents.{max(numbers, default=-1) + 1:04d}.ganaug"

    def _open(self) -> Any:
        if self._writer is not None:
            return self._writer
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Files a killed process left (never closed, so never numbered) come before this one, in the order written.
        for p in sorted(self.log_dir.glob(EVENTS_GLOB)):
            if not _NUMBERED.match(p.name):
                p.rename(self.log_dir / self._next_name())
        before = set(self.log_dir.glob(EVENTS_GLOB))
        self._writer = SummaryWriter(str(self.log_dir), purge_step=self._purge, flush_secs=10)
        self._purge = None
        self._writer.flush()  # the file exists from here on
        new = sorted(set(self.log_dir.glob(EVENTS_GLOB)) - before)
        self._file = new[-1] if new else None
        return self._writer
